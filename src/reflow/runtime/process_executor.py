"""The process executor: reactors live in worker processes; invocations and results move over the transport.

Policy. ``start`` places every reactor on a worker (``placement.place``) and loads each worker process with
the hosts it keeps, pickled: from then on their state lives there and only there.
Each worker talks to the scheduler over one ``reflow.transport.Channel`` (small messages inline, arrays
through the worker's shared-memory store). ``run_batch`` splits a batch by worker, sends every worker its
part first, runs the reactors kept local (``local=``) in the calling thread meanwhile, then collects the
replies and returns the results in batch order. The scheduler applies results in that order, so a program
gives the same trace with threads, processes or a mix: placement decides where reactions run, never what
they do. An array one worker produced and another consumes goes through the scheduler without a copy: the
scheduler forwards it from the producer's store (``reflow.transport.forward``); ``channel_stats`` counts,
per worker, the batches sent inline, copied into the scheduler's store, or forwarded.

Processes. By default the executor starts its worker processes itself and stops them with the run. A
``WorkerPool`` keeps worker processes for many runs: given ``pool=``, an executor loads its program's reactors
into the pool's workers and leaves them running at the end, so many short programs (a test suite, a
notebook) pay for starting processes (about a second) once.

Faults. While waiting for a reply the executor checks that the worker is alive; a worker that died (crashed,
killed) raises ``WorkerCrashed`` naming the worker and the reactors it held. ``close`` (which the scheduler
calls on every exit path, Ctrl-C included) stops the workers, kills any that do not stop, and unlinks
shared memory a killed worker could not unlink itself. An exception in a reaction is not a fault: it comes
back as a result, like with threads; one that cannot be pickled comes back as a ``RuntimeError`` with the
original traceback text. Nor is a value that cannot be sent between processes (a ctypes pointer, a lock):
the reaction that wrote it (or, for a value sent to a worker, the reaction that reads it) fails with
``UnsendableValue`` naming the reaction and the port, and the program stops as after any failed reaction.
The checks cost nothing on the way: a message is pickled once, and only one that failed is taken apart.

Threads. Numeric libraries start one thread per core in every process, so P workers running torch or BLAS
at once would put P times as many threads on the cores as there are cores. Each worker is therefore capped
at ``threads_per_worker`` (default: the cores divided by the workers, at least 1): ``OMP_NUM_THREADS``,
``OPENBLAS_NUM_THREADS`` and ``MKL_NUM_THREADS`` are in its environment from its start, where torch,
OpenBLAS and MKL read them when they load. A user who set any of them keeps their own setting.

After a run, the reactor objects in the scheduler's process still hold their state from before the run (the
live state was in the workers); read results from the trace or from reactors kept local.
"""

from __future__ import annotations

import os
import pickle
import threading
from collections.abc import Collection, Mapping, Sequence
from types import TracebackType
from typing import Any

from reflow.errors import ChannelClosed, SerializationError, UnsendableValue, WorkerCrashed
from reflow.graph import Graph
from reflow.runtime.executor import Executor, Invocation, ReactionHost, Result, run_invocation
from reflow.runtime.placement import LOCAL, place
from reflow.runtime.workers import WorkerProcess
from reflow.transport import Channel
from reflow.transport.pubsub import PublisherStats

_STOP = "stop"
LOAD, READY = "load", "ready"  # (LOAD, pickled hosts): a worker takes the next program's reactors


def _pickles(value: object) -> bool:
    """Whether ``value`` pickles. Array buffers are left out of the trial (taken out of band and dropped):
    pickling them in band would copy every array, a millisecond per megabyte, only to throw the copy away."""
    try:
        pickle.dumps(value, protocol=5, buffer_callback=lambda buf: False)
    except Exception:
        return False
    return True


def _unsendable(what: str, value: object, reaction: str, port: str) -> UnsendableValue:
    return UnsendableValue(
        f"{what} a value of type {type(value).__qualname__}, which cannot be sent between "
        "processes (it does not pickle); send plain data, numpy arrays or tensors, or keep the reactors that "
        "exchange it in one process (ProcessExecutor(local=[...]) or threads)", reaction, port)


def sendable(result: Result) -> Result:
    """``result``, or, if part of it does not pickle, a result that fails with a reflow error naming the
    reaction and the port (instead of a worker that dies sending it). Called only after a send failed."""
    for key, value in result.writes.items():
        if not _pickles(value):
            return _failed(result, _unsendable(f"reaction {result.name} wrote to port {key}", value,
                                               result.name, key))
    for s in result.schedules:
        if not _pickles(s.value):
            what = f"reaction {result.name} scheduled action {s.key} with"
            return _failed(result, _unsendable(what, s.value, result.name, s.key))
    if result.error is not None and not _pickles(result.error):
        result.error = RuntimeError(f"reaction {result.name} raised an exception that cannot be sent between "
                                    f"processes:\n{result.error_text}")
    return result


def _failed(result: Result, error: BaseException) -> Result:
    return Result(result.reactor, result.reaction, result.name, stop=result.stop, error=error,
                  error_text=str(error), elapsed=result.elapsed)


def worker_main(channel: str) -> None:
    """A worker process: run the invocations it is sent on the hosts it is loaded with, until stopped."""
    serve_hosts(channel, {})


def serve_hosts(channel: str, hosts: Mapping[str, ReactionHost]) -> None:
    """Run the invocations sent on side ``b`` of ``channel`` on ``hosts`` until told to stop (the loop of a
    worker process, and of a Ray executor's reactor group); a ``(LOAD, pickled hosts)`` message replaces
    the hosts (the next program of a ``WorkerPool``)."""
    with Channel(channel, "b") as ch:
        while True:
            batch = ch.recv()
            if isinstance(batch, str):
                return
            if isinstance(batch, tuple):
                hosts = pickle.loads(batch[1])
                ch.send(READY)
                continue
            results = [run_invocation(hosts[inv.reactor], inv) for inv in batch]
            try:
                ch.send(results)
            except SerializationError:
                ch.send([sendable(r) for r in results])


class WorkerPool:
    """``workers`` worker processes (``processes[w]``: a ``WorkerProcess``) for one run after another, until
    ``close`` (idempotent; also at the end of a ``with`` block). Each is capped at ``threads_per_worker``
    numeric-library threads (default: the cores divided by the workers, at least 1)."""

    def __init__(self, workers: int = 2, *, threads_per_worker: int | None = None,
                 start_timeout: float = 60.0) -> None:
        if workers < 1:
            raise ValueError(f"a worker pool needs at least 1 worker, got {workers}")
        if threads_per_worker is not None and threads_per_worker < 1:
            raise ValueError(f"a worker pool needs threads_per_worker >= 1, got {threads_per_worker}")
        self.workers = workers
        self.threads_per_worker = threads_per_worker or max(1, (os.cpu_count() or 1) // workers)
        self.processes: list[WorkerProcess] = []
        try:
            for w in range(workers):
                self.processes.append(WorkerProcess(worker_main, (), label=f"worker-{w}",
                                                    threads=self.threads_per_worker))
            for proc in self.processes:
                proc.connect(start_timeout)
        except BaseException:
            self.close()
            raise

    @property
    def pids(self) -> list[int | None]:
        return [p.pid for p in self.processes]

    def close(self) -> None:
        """Stop the workers (kill those that do not stop) and free their shared memory."""
        for proc in self.processes:
            proc.close(stop=_STOP)
        self.processes = []

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


class ProcessExecutor(Executor):
    """Runs reactors in ``workers`` processes; reactors named in ``local`` stay in the scheduler's process.
    With ``pool=`` it uses that ``WorkerPool``'s processes (and its size) and leaves them running."""

    def __init__(self, workers: int = 2, local: Collection[str] = (), start_timeout: float = 60.0,
                 threads_per_worker: int | None = None, pool: WorkerPool | None = None) -> None:
        super().__init__()
        if workers < 1:
            raise ValueError(f"ProcessExecutor needs at least 1 worker, got {workers}")
        if threads_per_worker is not None and threads_per_worker < 1:
            raise ValueError(f"ProcessExecutor needs threads_per_worker >= 1, got {threads_per_worker}")
        self.workers = pool.workers if pool is not None else workers
        self.threads_per_worker = threads_per_worker
        self.local = tuple(local)
        self.start_timeout = start_timeout
        self.placement: dict[str, int] = {}
        self._pool = pool
        self._own: WorkerPool | None = None  # the pool this executor started, and stops
        self._procs: list[Any] = []
        self._chans: list[Channel] = []
        self.channel_stats: list[PublisherStats] = []  # of the sends to each worker, kept after close
        self._lock = threading.Lock()

    @property
    def pids(self) -> list[int]:
        """The worker processes' ids (while started)."""
        return [p.pid for p in self._procs]

    def start(self, hosts: Mapping[str, ReactionHost], graph: Graph) -> None:
        super().start(hosts, graph)
        unknown = sorted(set(self.local) - set(hosts))
        if unknown:
            raise ValueError(f"ProcessExecutor(local=...): reactors {unknown} are not in the program; its "
                             f"reactors are {sorted(hosts)}")
        with_reactions = {str(n.attrs["reactor"]) for n in graph}
        self.placement = place(graph, self.workers, [p for p in self.local if p in with_reactions])
        for path in hosts:  # a reactor without reactions still gets a home
            self.placement.setdefault(path, LOCAL if path in self.local else 0)
        try:
            pool = self._pool
            if pool is None:
                pool = self._own = WorkerPool(self.workers, threads_per_worker=self.threads_per_worker,
                                              start_timeout=self.start_timeout)
            self._procs = [p.proc for p in pool.processes]
            self._chans = [p.channel for p in pool.processes]
            self.channel_stats = [ch.out.stats for ch in self._chans]
            for w, ch in enumerate(self._chans):
                ch.send((LOAD, pickle.dumps({p: h for p, h in hosts.items() if self.placement[p] == w})))
            for w in range(self.workers):
                self._reply(w)  # READY, or WorkerCrashed naming the reactors it could not load
        except BaseException:
            self.close()
            raise

    def held_by(self, worker: int) -> list[str]:
        """The reactors worker ``worker`` keeps."""
        return sorted(p for p, w in self.placement.items() if w == worker)

    def _reply(self, w: int) -> Any:
        proc, ch = self._procs[w], self._chans[w]
        while True:
            try:
                return ch.recv(timeout=0.05)
            except TimeoutError:
                if not proc.is_alive():
                    break
            except ChannelClosed:
                proc.join(1.0)
                break
            except FileNotFoundError:  # a message in the store of a process that died: name the dead worker
                dead = next((v for v, p in enumerate(self._procs) if not p.is_alive()), None)
                if dead is None:
                    raise
                w, proc = dead, self._procs[dead]
                break
        raise WorkerCrashed(
            f"worker process {w} (pid {proc.pid}) died with exit code {proc.exitcode} while running reactors "
            f"{self.held_by(w)}; their state is lost. Look for the cause in the worker's output (a crash in "
            "native code, running out of memory, or a kill signal)")

    def run_batch(self, batch: Sequence[Invocation]) -> list[Result]:
        parts: dict[int, list[int]] = {}
        for i, inv in enumerate(batch):
            parts.setdefault(self.placement[inv.reactor], []).append(i)
        results: list[Result | None] = [None] * len(batch)
        with self._lock:
            sent: dict[int, list[list[int]]] = {}  # per worker, the batch indices of each message sent
            for w, idx in parts.items():
                if w != LOCAL:
                    sent[w] = self._send(w, batch, idx, results)
            for i in parts.get(LOCAL, []):
                results[i] = run_invocation(self._hosts[batch[i].reactor], batch[i])
            for w, messages in sent.items():
                for idx in messages:
                    for i, r in zip(idx, self._reply(w), strict=True):
                        results[i] = r
        done = [r for r in results if r is not None]
        for r in done:
            self._record(r)
        return done

    def _send(self, w: int, batch: Sequence[Invocation], idx: list[int],
              results: list[Result | None]) -> list[list[int]]:
        """Send worker ``w`` its part of ``batch``; returns the indices of each message sent. An invocation
        carrying a value that cannot be sent is not sent: its result fails with ``UnsendableValue``."""
        try:
            self._chans[w].send([batch[i] for i in idx])
            return [idx]
        except ChannelClosed:
            self._reply(w)  # raises WorkerCrashed naming the reactors
        except SerializationError:
            pass
        messages = []
        for i in idx:  # one at a time, to find the culprit and still run the rest
            inv = batch[i]
            bad = next(((k, v) for k, v in inv.values.items() if not _pickles(v)), None)
            if bad is None:
                self._chans[w].send([inv])
                messages.append([i])
                continue
            error = _unsendable(f"the value on port {bad[0]}, read by reaction {inv.name} in worker process "
                                f"{w}, is", bad[1], inv.name, bad[0])
            results[i] = Result(inv.reactor, inv.reaction, inv.name, error=error, error_text=str(error))
        return messages

    def close(self) -> None:
        """Stop the workers this executor started (kill those that do not stop), free their shared memory;
        a borrowed pool's workers keep running. Idempotent."""
        super().close()
        if self._own is not None:
            self._own.close()
            self._own = None
        self._procs, self._chans = [], []
