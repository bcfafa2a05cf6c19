"""Run a generated module's clusters (or batch slices) in worker processes: no GIL between them.

Policy. The generated module runs its clusters on threads, and two threads dispatching small torch ops
contend for the one GIL: on 2 cores, inter-op clusters and batch slices lose much of their gain to it
(issue 18). Here, as in Ramiel's own runtime, each cluster runs in a process of its own, so each has its own
interpreter and its own GIL. The code that runs is the module's own cluster functions, unchanged: they take
the values ``v`` and events ``ev`` they share with the other clusters as arguments, and here those are
shared memory and signal queues instead of a dict and ``threading.Event``s.

* **Buffers**: one segment of reflow's shared-memory transport (``reflow.transport.shm``), owned by the
  parent, holds a slot for every input, every value that crosses clusters and every output, each with the
  shape, dtype and strides (channels-last stays channels-last) that one probe run of the thread runtime
  showed at load. A producer copies a value into its slot once (``v[name] = x``); its consumers read the slot
  in place. Shapes are therefore fixed at load: a call with other input shapes is an error.
* **Signals**: each worker reads one pipe, its signal queue. A message is 8 bytes (what, call number), so
  writes from several processes never interleave. ``ev[name].set()`` sends the value's index to every other
  worker; ``ev[name].wait()`` reads the queue until that index (or an abort) has arrived. The parent starts a
  call with a RUN message to each worker and reads each worker's result pipe.
* **Failure**: a cluster that raises sends ABORT to the other workers (their waits end, as the thread
  runtime sets every event) and its exception to the parent, which raises it after every worker answered;
  the pool stays usable. A worker that dies (killed, segfault) is seen through its process sentinel: the
  parent then stops every worker, unlinks the segment and raises ``WorkerCrashed`` naming the cluster. A
  worker whose parent dies exits by itself (a watchdog thread polls the parent's pid). ``close()`` (or the
  context manager, or interpreter exit) stops the workers and unlinks the segment.

Workers are spawned (a fresh interpreter: forking a process whose OpenMP pool already ran is unsafe), each
loads the module and the weights itself and packs them for its own torch thread count; that takes seconds
once, at load. The caller's thread only copies the inputs in (numpy, one thread) and the outputs out.
"""

from __future__ import annotations

import contextlib
import importlib.util
import multiprocessing as mp
import os
import pickle
import struct
import threading
import time
import traceback
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from pathlib import Path
from types import ModuleType, TracebackType
from typing import Any

import numpy as np
import torch

from reflow.errors import WorkerCrashed
from reflow.runtime.workers import thread_caps
from reflow.transport.shm import SharedSegment

MSG = struct.Struct("<iI")  # (a cross value's index, or RUN / ABORT / STOP; the call number)
RUN, ABORT, STOP = -1, -2, -3
ALIGN = 64  # bytes: each slot starts on a cache line
WATCHDOG = 0.5  # seconds between a worker's checks that its parent still lives


@dataclass(frozen=True)
class Slot:
    """Where one value lives in the shared segment, and its tensor geometry."""

    offset: int
    shape: tuple[int, ...]
    stride: tuple[int, ...]
    dtype: str  # torch dtype name, e.g. "float32"

    @property
    def nbytes(self) -> int:
        extent = 1 + sum((n - 1) * s for n, s in zip(self.shape, self.stride, strict=True)) if all(
            self.shape
        ) else 0
        return extent * int(getattr(torch, self.dtype).itemsize)


def load_module(path: str | Path) -> ModuleType:
    """Import a generated module from its file (under a name of its own, not as __main__)."""
    path = Path(path)
    spec = importlib.util.spec_from_file_location(f"reflow_generated_{path.stem}", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load the generated module {path}")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def layout(values: dict[str, torch.Tensor]) -> tuple[dict[str, Slot], int]:
    """A slot for each value, one after another (aligned): the slots and the segment size."""
    slots: dict[str, Slot] = {}
    offset = 0
    for name, t in values.items():
        slot = Slot(offset, tuple(t.shape), tuple(t.stride()), str(t.dtype).removeprefix("torch."))
        slots[name] = slot
        offset += -(-max(slot.nbytes, 1) // ALIGN) * ALIGN
    return slots, max(offset, ALIGN)


def view(seg: SharedSegment, slot: Slot) -> torch.Tensor:
    """The slot as a tensor on the segment's memory (no copy)."""
    dtype = getattr(torch, slot.dtype)
    raw = torch.frombuffer(seg.buf, dtype=torch.uint8, count=max(slot.nbytes, 1), offset=slot.offset)
    return raw.view(dtype).as_strided(slot.shape, slot.stride) if slot.nbytes else torch.empty(
        slot.shape, dtype=dtype
    )


def probe(mod: ModuleType, weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Every value a call moves between processes, from one run of the thread runtime on random inputs:
    the inputs, the values that cross clusters (clusters mode) and the outputs."""
    inputs = mod.random_inputs()
    with mod.ParallelModel(weights) as model:
        if mod.MODE == "batch":
            return {**inputs, **model(**inputs)}
        v = dict(inputs)
        ev = {name: threading.Event() for name in mod.CROSS_VALUES}
        mod._run_all(model._workers, [(fn, (model.w, v, ev)) for fn in mod.CLUSTERS], ev)
        return {k: v[k] for k in dict.fromkeys([*inputs, *mod.CROSS_VALUES, *mod.OUTPUTS])}


class ProcessModel:
    """A generated module's clusters (or batch slices), each in a worker process; called like the module's
    ``ParallelModel``: ``model(**inputs)`` -> dict of output tensors by ONNX name."""

    def __init__(self, module_path: str | Path, weights_path: str | Path | None = None, *,
                 start_timeout: float = 300.0) -> None:
        self.path = Path(module_path)
        wpath = Path(weights_path) if weights_path else self.path.with_suffix(".pt")
        mod = load_module(self.path)
        self.mode: str = mod.MODE
        self.outputs: tuple[str, ...] = mod.OUTPUTS
        self.labels = (
            [f"slice {i}" for i in range(mod.BATCH_SLICES)]
            if self.mode == "batch"
            else [f"cluster {i} ({fn.__name__})" for i, fn in enumerate(mod.CLUSTERS)]
        )
        values = probe(mod, torch.load(wpath, weights_only=True))
        self.inputs = {k: values[k] for k in mod.INPUTS}
        self.slots, size = layout(values)
        self._procs: list[Any] = []
        self._inboxes: list[Connection] = []
        self._results: list[Connection] = []
        self._call = 0
        self._seg: SharedSegment | None = SharedSegment.create(size)
        try:
            self.views = {k: view(self._seg, s) for k, s in self.slots.items()}
            self._start(mod, wpath, start_timeout)
        except BaseException:
            self.close()
            raise

    def _start(self, mod: ModuleType, wpath: Path, timeout: float) -> None:
        assert self._seg is not None
        ctx = mp.get_context("spawn")
        n = len(self.labels)
        pipes = [ctx.Pipe(duplex=False) for _ in range(n)]  # (reader, writer): worker i's signal queue
        results = [ctx.Pipe(duplex=False) for _ in range(n)]
        self._inboxes = [w for _, w in pipes]
        self._results = [r for r, _ in results]
        cross = tuple(mod.CROSS_VALUES) if self.mode != "batch" else ()
        with thread_caps(mod.INTRA_OP_THREADS):
            for i in range(n):
                peers = [pipes[j][1] for j in range(n) if j != i]
                args = (i, str(self.path), str(wpath), self._seg.name, self.slots, cross, pipes[i][0], peers,
                        results[i][1], os.getpid())
                p = ctx.Process(target=_worker_main, args=args, daemon=True, name=f"reflow-{self.labels[i]}")
                p.start()
                self._procs.append(p)
        for reader, _ in pipes:
            reader.close()
        for _, writer in results:
            writer.close()
        for i, (status, detail) in enumerate(self._answers(timeout)):
            if status != "ready":
                raise WorkerCrashed(f"the worker of {self.labels[i]} failed to start: {detail}")

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self._procs]

    def __call__(self, **inputs: Any) -> dict[str, torch.Tensor]:
        if self._seg is None:
            raise RuntimeError(f"the process model of {self.path.name} is closed")
        self._check(inputs)
        for name, x in inputs.items():  # numpy copies on one thread: the caller's torch pool stays asleep
            np.copyto(self.views[name].numpy(), torch.as_tensor(x).detach().numpy())
        self._call += 1
        for inbox in self._inboxes:
            with contextlib.suppress(OSError):  # a dead worker: its answer below says so
                inbox.send_bytes(MSG.pack(RUN, self._call))
        answers = self._answers(None)
        errors = [(i, detail) for i, (status, detail) in enumerate(answers) if status == "error"]
        if errors:
            i, (exc, tb) = errors[0]
            if not isinstance(exc, BaseException):
                exc = RuntimeError(exc)
            exc.add_note(f"raised in the worker process of {self.labels[i]}:\n{tb}")
            raise exc
        return {name: self.views[name].clone() for name in self.outputs}

    def _check(self, inputs: dict[str, Any]) -> None:
        if set(inputs) != set(self.inputs):
            raise ValueError(f"{self.path.name} takes inputs {sorted(self.inputs)}, got {sorted(inputs)}")
        for name, x in inputs.items():
            want = self.inputs[name]
            t = torch.as_tensor(x)
            if tuple(t.shape) != tuple(want.shape) or t.dtype != want.dtype:
                raise ValueError(
                    f"input {name!r}: shape {tuple(t.shape)} {t.dtype}, but the process runtime of "
                    f"{self.path.name} was set up for {tuple(want.shape)} {want.dtype} (its shapes are fixed)"
                )

    def _answers(self, timeout: float | None) -> list[tuple[str, Any]]:
        """One answer from every worker. Waits on all of them at once: a worker blocked on a value from one
        that died never answers, so the death must be seen first. If one dies, stop everything and raise
        WorkerCrashed."""
        end = None if timeout is None else time.monotonic() + timeout
        answers: dict[int, tuple[str, Any]] = {}
        while len(answers) < len(self._procs):
            waiting = [i for i in range(len(self._procs)) if i not in answers]
            left = None if end is None else max(0.0, end - time.monotonic())
            ready = wait([x for i in waiting for x in (self._results[i], self._procs[i].sentinel)], left)
            if not ready:
                late = [self.labels[i] for i in waiting]
                raise TimeoutError(f"the workers of {late} did not answer in time")
            for i in waiting:
                if self._results[i] in ready:
                    try:
                        answers[i] = self._results[i].recv()
                        continue
                    except EOFError:  # its end of the pipe closed: the worker is gone
                        self._crashed(i)
                if self._procs[i].sentinel in ready and not self._results[i].poll():
                    self._crashed(i)
        return [answers[i] for i in range(len(self._procs))]

    def _crashed(self, i: int) -> None:
        proc = self._procs[i]
        proc.join(1.0)
        code = proc.exitcode
        self.close()
        raise WorkerCrashed(
            f"the worker process of {self.labels[i]} (pid {proc.pid}) of {self.path.name} died "
            f"(exit code {code}); all its workers were stopped"
        )

    def close(self) -> None:
        """Stop the workers (kill those that do not stop), unlink the shared segment; safe to call twice."""
        for inbox in self._inboxes:
            with contextlib.suppress(OSError):
                inbox.send_bytes(MSG.pack(STOP, 0))
        for p in self._procs:
            p.join(5.0)
            if p.is_alive():
                p.kill()
                p.join(5.0)
        for conn in [*self._inboxes, *self._results]:
            conn.close()
        self._procs, self._inboxes, self._results = [], [], []
        self.views = {}
        seg, self._seg = self._seg, None
        if seg is not None:
            seg.close()

    def __enter__(self) -> ProcessModel:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __del__(self) -> None:
        if getattr(self, "_seg", None) is not None:
            self.close()


# --- the worker process ----------------------------------------------------------------------------------

class _Queue:
    """A worker's signal queue: which cross values (and whether an abort) arrived for the current call."""

    def __init__(self, inbox: Connection, peers: list[Connection], cross: tuple[str, ...]) -> None:
        self.inbox, self.peers, self.cross = inbox, peers, cross
        self.call = 0
        self.arrived: set[str] = set()
        self.aborted = False
        self.early: list[tuple[int, int]] = []  # messages for a call this worker has not started yet

    def next(self) -> tuple[int, int]:
        """The next message that is not for a call already over (noting values and aborts as they come)."""
        while True:
            try:
                what, call = MSG.unpack(self.inbox.recv_bytes())
            except EOFError:  # every writer is gone (the parent died): nothing will ever come, exit quietly
                raise SystemExit(0) from None
            if what in (RUN, STOP) or call == self.call:
                if what == ABORT:
                    self.aborted = True
                elif what >= 0:
                    self.arrived.add(self.cross[what])
                return what, call
            if call > self.call:
                self.early.append((what, call))

    def start(self, call: int) -> None:
        self.call, self.arrived, self.aborted = call, set(), False
        early, self.early = self.early, []
        for what, c in early:
            if c == call and what == ABORT:
                self.aborted = True
            elif c == call:
                self.arrived.add(self.cross[what])

    def send(self, what: int) -> None:
        for peer in self.peers:
            peer.send_bytes(MSG.pack(what, self.call))


class _Values:
    """The ``v`` of the generated cluster functions, over the shared slots."""

    def __init__(self, views: dict[str, torch.Tensor], queue: _Queue) -> None:
        self.views, self.queue = views, queue

    def __getitem__(self, name: str) -> torch.Tensor:
        return self.views[name]

    def __setitem__(self, name: str, value: torch.Tensor) -> None:
        self.views[name].copy_(value)

    def __contains__(self, name: str) -> bool:  # asked after a wait: absent means the call was aborted
        return name in self.queue.arrived


class _Signal:
    """The ``ev[name]`` of the generated cluster functions: announce a value, or wait for it."""

    def __init__(self, queue: _Queue, name: str, index: int) -> None:
        self.queue, self.name, self.index = queue, name, index

    def set(self) -> None:
        self.queue.send(self.index)

    def wait(self) -> None:
        q = self.queue
        while self.name not in q.arrived and not q.aborted:
            what, _ = q.next()
            if what == STOP:  # the parent gave up on this call (another worker died): exit quietly
                raise SystemExit(0)


def _watch_parent(ppid: int) -> None:
    while True:
        time.sleep(WATCHDOG)
        if os.getppid() != ppid:
            os._exit(3)  # the parent died: nobody will ever ask this worker for anything again


def _worker_main(index: int, module_path: str, weights_path: str, seg_name: str, slots: dict[str, Slot],
                 cross: tuple[str, ...], inbox: Connection, peers: list[Connection], result: Connection,
                 ppid: int) -> None:
    threading.Thread(target=_watch_parent, args=(ppid,), daemon=True).start()
    try:
        mod = load_module(module_path)
        mod.onnx_keep_freed_memory()
        torch.set_num_threads(mod.INTRA_OP_THREADS)  # the only thread here that sets one: it sticks
        seg = SharedSegment.attach(seg_name)
        views = {k: view(seg, s) for k, s in slots.items()}
        batch = mod.MODE == "batch"
        full = next(iter(views[k].shape[0] for k in mod.INPUTS if views[k].dim()), 1)
        rows = full // mod.BATCH_SLICES if batch else full
        with torch.inference_mode():
            w = mod.prepare_weights(torch.load(weights_path, weights_only=True), rows)
        # a batch slice or a one-cluster plan runs the whole graph, compiled where the module says so (as its
        # thread runtime does); a module made by an older reflow has no compiler
        whole = batch or len(mod.CLUSTERS) == 1
        forward = mod.forward_serial
        if whole and hasattr(mod, "compiled_forward"):
            forward = mod.compiled_forward(w, rows)
    except BaseException as e:
        result.send(("failed", f"{type(e).__name__}: {e}\n{traceback.format_exc()}"))
        return
    result.send(("ready", None))
    queue = _Queue(inbox, peers, cross)
    values = _Values(views, queue)
    signals = {name: _Signal(queue, name, i) for i, name in enumerate(cross)}
    while True:
        what, call = queue.next()
        if what == STOP:
            return
        if what != RUN:
            continue
        queue.start(call)
        try:
            with torch.inference_mode():
                if whole:
                    mine = {k: views[k].chunk(mod.BATCH_SLICES)[index] if batch else views[k] for k in views}
                    out = forward(w, {k: mine[k] for k in mod.INPUTS})
                    for k in mod.OUTPUTS:
                        mine[k].copy_(out[k])
                    del out, mine
                else:
                    mod.CLUSTERS[index](w, values, signals)
            result.send(("ok", None))
        except mod._Aborted:  # another worker failed: this one stopped waiting
            result.send(("aborted", None))
        except SystemExit:
            return
        except BaseException as e:
            queue.send(ABORT)
            tb = traceback.format_exc()
            try:
                pickle.dumps(e)
                result.send(("error", (e, tb)))
            except Exception:
                result.send(("error", (f"{type(e).__name__}: {e}", tb)))


def faster_runtime(module_path: str | Path, repeats: int = 10) -> tuple[str, dict[str, float]]:
    """Time a generated module on threads and on processes (each in its steady state, reflow.onnx.timing):
    the faster runtime and both times in seconds. What ``reflow parallelize --runtime auto`` picks by."""
    from reflow.onnx.timing import steady_medians

    mod = load_module(module_path)
    x = mod.random_inputs()
    with mod.load(runtime="threads") as threads, ProcessModel(module_path) as procs:
        calls = {"threads": lambda: threads(**x), "processes": lambda: procs(**x)}
        medians, _ = steady_medians(calls, repeats)
    return min(medians, key=lambda k: medians[k]), medians
