"""The server's handles on its worker processes.

A ``WorkerSlot`` is one place in the pool. It starts a worker (``reflow.runtime.workers.WorkerProcess``
running the serve worker's ``worker_main``) from a thread, so the event loop never blocks on a spawn, and
once the worker says it is ready, the event loop itself watches the worker's channel (``loop.add_reader`` on
the subscriber's socket): an answer is handled where it lands, with no thread hand-off or extra wake-up in
between. A lookup's fetch is answered right there from the flow's stores (the worker waits for it
mid-batch). A worker that dies closes its end of the channel, which the loop sees at once (a periodic check
catches the rest); the slot reports the death once, and ``restart`` starts a fresh worker in its place.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing as mp
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from reflow.errors import ChannelClosed, TransportError
from reflow.runtime.workers import WorkerProcess
from reflow.serve.store import Store
from reflow.serve.worker import CANCEL_SIGNAL, STOP, worker_main

ALIVE_EVERY = 0.5  # seconds between checks that a worker still runs (deaths usually show on the socket first)


class WorkerSlot:
    """Worker ``index``: its process, its channel, and the batch it is running (``busy``)."""

    def __init__(self, index: int, payload: bytes, stores: Mapping[str, Store],
                 loop: asyncio.AbstractEventLoop, on_message: Callable[[WorkerSlot, Any], None],
                 on_death: Callable[[WorkerSlot, str], None], threads: int = 1,
                 start_timeout: float = 120.0, fetched: Callable[[str, int], None] | None = None) -> None:
        self.index, self.payload, self.stores, self.loop = index, payload, stores, loop
        self.on_message, self.on_death = on_message, on_death
        self.threads, self.start_timeout, self.fetched = threads, start_timeout, fetched
        self.proc: WorkerProcess | None = None
        self.ready = False
        self.busy: Any = None  # the batch it runs (the executor's bookkeeping)
        self.generation = 0
        self.restarts = 0
        self._fd: int | None = None
        self._check: asyncio.TimerHandle | None = None
        self._starting: threading.Thread | None = None
        self._cancel = mp.get_context("spawn").RawValue("q", -1)

    def start(self) -> None:
        """Start a worker (from a thread); ``on_message(slot, ("ready", pid))`` once it takes batches."""
        self.ready, self.busy = False, None
        self.generation += 1
        self._starting = threading.Thread(target=self._spawn, args=(self.generation,), daemon=True,
                                          name=f"reflow-serve-start-{self.index}")
        self._starting.start()

    def _spawn(self, generation: int) -> None:
        try:
            proc = WorkerProcess(worker_main, (self.payload, self._cancel), label=f"serve-{self.index}",
                                 threads=self.threads, spin=0.0)
            self.proc = proc
            proc.connect(self.start_timeout)
            hello = proc.recv(self.start_timeout)
        except BaseException as e:
            why = f"could not start: {type(e).__name__}: {e}"
            with contextlib.suppress(RuntimeError):
                self.loop.call_soon_threadsafe(self._died, generation, why)
            return
        with contextlib.suppress(RuntimeError):  # the loop is gone: the server stopped meanwhile
            self.loop.call_soon_threadsafe(self._attach, generation, hello)

    def _attach(self, generation: int, hello: Any) -> None:
        if generation != self.generation or self.proc is None:
            return
        self._fd = self.proc.channel.inp.fileno()
        self.loop.add_reader(self._fd, self._readable, generation)
        self._check = self.loop.call_later(ALIVE_EVERY, self._alive, generation)
        self.on_message(self, hello)

    def _detach(self) -> None:
        if self._fd is not None:
            self.loop.remove_reader(self._fd)
            self._fd = None
        if self._check is not None:
            self._check.cancel()
            self._check = None

    def _readable(self, generation: int) -> None:
        proc = self.proc
        while generation == self.generation and proc is not None:
            try:
                msg = proc.channel.recv(timeout=0)
            except TimeoutError:
                return
            except (ChannelClosed, TransportError):
                proc.proc.join(1.0)
                self._died(generation, f"exit code {proc.proc.exitcode}")
                return
            if isinstance(msg, tuple) and msg[0] == "fetch":
                self._fetch(msg[1], msg[2])
            else:
                self.on_message(self, msg)

    def _alive(self, generation: int) -> None:
        if generation != self.generation or self.proc is None:
            return
        if not self.proc.alive():
            self._died(generation, f"exit code {self.proc.proc.exitcode}")
            return
        self._check = self.loop.call_later(ALIVE_EVERY, self._alive, generation)

    def _died(self, generation: int, why: str) -> None:
        if generation == self.generation:
            self.generation += 1  # later news of this worker is stale
            self.ready = False
            self._detach()
            self.on_death(self, why)

    def _fetch(self, store: str, keys: list[Any]) -> None:
        values = self.stores[store].fetch(keys) if store in self.stores else {}
        self.send(("fetched", values))
        if self.fetched is not None:
            self.fetched(store, len(values))

    def send(self, msg: Any) -> None:
        assert self.proc is not None
        self.proc.channel.send(msg)

    def cancel(self, batch: int) -> None:
        """Interrupt batch ``batch`` if it is what the worker runs (see ``reflow.serve.worker``)."""
        self._cancel.value = batch
        if self.proc is not None:
            self.proc.signal(CANCEL_SIGNAL)

    def kill(self) -> None:
        """Kill the process (a batch stuck in native code); its channel closing reports the death."""
        if self.proc is not None and self.proc.proc.pid is not None:
            with contextlib.suppress(Exception):
                self.proc.proc.kill()

    def restart(self) -> None:
        """Replace a dead worker with a fresh one (call from the event loop)."""
        self.restarts += 1
        proc, self.proc = self.proc, None
        if proc is not None:
            threading.Thread(target=proc.close, args=(STOP, 2.0), daemon=True).start()
        self.start()

    def detach(self) -> None:
        """Stop watching the worker (call from the event loop, before ``close``)."""
        self.generation += 1
        self.ready = False
        self._detach()

    def close(self) -> None:
        """Stop the worker; free its channel and shared memory (any thread). Idempotent."""
        self.ready = False
        end = time.monotonic() + self.start_timeout
        starting = self._starting
        if starting is not None and starting.is_alive():
            starting.join(max(0.0, end - time.monotonic()))  # a start in progress: let it finish first
        proc, self.proc = self.proc, None
        if proc is not None:
            proc.close(STOP, timeout=2.0)


class LocalPool:
    """Makes the server's workers processes on this machine (what ``LocalExecutor`` uses by default)."""

    def __init__(self, threads: int = 1, start_timeout: float = 120.0,
                 fetched: Callable[[str, int], None] | None = None) -> None:
        self.threads, self.start_timeout, self.fetched = threads, start_timeout, fetched
        self.stores: Mapping[str, Store] = {}

    def open(self, stores: Mapping[str, Store]) -> None:
        self.stores = stores

    def payload(self, stages: Mapping[str, Any]) -> bytes:
        import cloudpickle

        data: bytes = cloudpickle.dumps(dict(stages))
        return data

    def slot(self, index: int, payload: bytes, loop: asyncio.AbstractEventLoop,
             on_message: Callable[[Any, Any], None], on_death: Callable[[Any, str], None]) -> WorkerSlot:
        return WorkerSlot(index, payload, self.stores, loop, on_message, on_death, self.threads,
                          self.start_timeout, self.fetched)

    def close(self) -> None:
        """Nothing to release: each slot owns its process."""
