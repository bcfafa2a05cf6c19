"""The process executor: reactors live in worker processes; invocations and results move over the transport.

Policy. ``start`` places every reactor on a worker (``placement.place``), starts one ``spawn`` process per
worker and hands it, pickled, the hosts it keeps: from then on their state lives there and only there.
Each worker talks to the scheduler over one ``reflow.transport.Channel`` (small messages inline, arrays
through the worker's shared-memory store). ``run_batch`` splits a batch by worker, sends every worker its
part first, runs the reactors kept local (``local=``) in the calling thread meanwhile, then collects the
replies and returns the results in batch order. The scheduler applies results in that order, so a program
gives the same trace with threads, processes or a mix: placement decides where reactions run, never what
they do. An array one worker produced and another consumes goes through the scheduler without a copy: the
scheduler forwards it from the producer's store (``reflow.transport.forward``); ``channel_stats`` counts,
per worker, the batches sent inline, copied into the scheduler's store, or forwarded.

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

import contextlib
import itertools
import multiprocessing as mp
import os
import pickle
import threading
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from reflow.errors import ChannelClosed, SerializationError, UnsendableValue, WorkerCrashed
from reflow.graph import Graph
from reflow.runtime.executor import Executor, Invocation, ReactionHost, Result, run_invocation
from reflow.runtime.placement import LOCAL, place
from reflow.runtime.workers import thread_caps
from reflow.transport import Channel
from reflow.transport.pubsub import PublisherStats
from reflow.transport.shm import unlink_segments_of

_STOP = "stop"
_names = itertools.count()


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


def worker_main(channel: str, hosts_pickle: bytes) -> None:
    """A worker process: run the invocations it is sent on its own hosts until told to stop."""
    serve_hosts(channel, pickle.loads(hosts_pickle))


def serve_hosts(channel: str, hosts: Mapping[str, ReactionHost]) -> None:
    """Run the invocations sent on side ``b`` of ``channel`` on ``hosts`` until told to stop (the loop of a
    worker process, and of a Ray executor's reactor group)."""
    with Channel(channel, "b") as ch:
        while True:
            batch = ch.recv()
            if isinstance(batch, str):
                return
            results = [run_invocation(hosts[inv.reactor], inv) for inv in batch]
            try:
                ch.send(results)
            except SerializationError:
                ch.send([sendable(r) for r in results])


class ProcessExecutor(Executor):
    """Runs reactors in ``workers`` processes; reactors named in ``local`` stay in the scheduler's process."""

    def __init__(self, workers: int = 2, local: Collection[str] = (), start_timeout: float = 60.0,
                 threads_per_worker: int | None = None) -> None:
        super().__init__()
        if workers < 1:
            raise ValueError(f"ProcessExecutor needs at least 1 worker, got {workers}")
        if threads_per_worker is not None and threads_per_worker < 1:
            raise ValueError(f"ProcessExecutor needs threads_per_worker >= 1, got {threads_per_worker}")
        self.workers = workers
        self.threads_per_worker = threads_per_worker or max(1, (os.cpu_count() or 1) // workers)
        self.local = tuple(local)
        self.start_timeout = start_timeout
        self.placement: dict[str, int] = {}
        self._procs: list[Any] = []
        self._chans: list[Channel] = []
        self.channel_stats: list[PublisherStats] = []  # of the sends to each worker, kept after close
        self._lock = threading.Lock()

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
        ctx = mp.get_context("spawn")
        try:
            with thread_caps(self.threads_per_worker):
                for w in range(self.workers):
                    name = f"reflow-exec-{os.getpid()}-{next(_names)}-{w}"
                    mine = {p: h for p, h in hosts.items() if self.placement[p] == w}
                    self._chans.append(Channel(name, "a"))
                    self.channel_stats.append(self._chans[-1].out.stats)
                    proc = ctx.Process(target=worker_main, args=(name, pickle.dumps(mine)), daemon=True,
                                       name=f"reflow-worker-{w}")
                    proc.start()
                    self._procs.append(proc)
            for ch in self._chans:
                ch.connect(self.start_timeout)
        except BaseException:
            self.close()
            raise

    def held_by(self, worker: int) -> list[str]:
        """The reactors worker ``worker`` keeps."""
        return sorted(p for p, w in self.placement.items() if w == worker)

    def _reply(self, w: int) -> list[Result]:
        proc, ch = self._procs[w], self._chans[w]
        while True:
            try:
                reply: list[Result] = ch.recv(timeout=0.05)
                return reply
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
        """Stop the workers (kill those that do not stop), free their shared memory. Idempotent."""
        super().close()
        for ch, proc in zip(self._chans, self._procs, strict=False):
            if proc.is_alive():
                with contextlib.suppress(Exception):
                    ch.send(_STOP)
        for proc in self._procs:
            proc.join(5.0)
            if proc.is_alive():
                proc.kill()
                proc.join(5.0)
        for ch in self._chans:
            ch.close()
        for proc in self._procs:
            if proc.pid is not None:
                unlink_segments_of(proc.pid)  # what a killed worker could not unlink itself
        self._procs, self._chans = [], []
