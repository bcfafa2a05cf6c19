"""The server's handles on its worker processes, each with a thread that receives what the worker sends.

A ``WorkerSlot`` is one place in the pool: it starts a worker (``reflow.runtime.workers.WorkerProcess``, the
serve worker's ``worker_main``) from a thread, so the event loop never blocks on a spawn, and keeps a receiver
thread on the channel. Answers go to the event loop (``loop.call_soon_threadsafe``); a lookup's fetch is
answered right in the receiver thread from the flow's stores (the worker waits for it mid-batch). When the
worker dies, the slot reports it once, and ``restart`` starts a fresh one in its place.
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

POLL = 0.1  # seconds between liveness checks while a worker is quiet


class WorkerSlot:
    """Worker ``index``: its process, its receiver thread, and the batch it is running."""

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
        self._send_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._cancel = mp.get_context("spawn").RawValue("q", -1)

    def start(self) -> None:
        """Start the worker (in a thread): ``on_message(slot, ("ready", pid))`` when it can take batches."""
        self.ready, self.busy = False, None
        self.generation += 1
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, args=(self.generation,), daemon=True,
                                        name=f"reflow-serve-recv-{self.index}")
        self._thread.start()

    def _post(self, fn: Callable[..., None], *args: Any) -> None:
        with contextlib.suppress(RuntimeError):  # the loop closed: nobody is listening any more
            self.loop.call_soon_threadsafe(fn, *args)

    def _run(self, generation: int) -> None:
        try:
            proc = WorkerProcess(worker_main, (self.payload, self._cancel), label=f"serve-{self.index}",
                                 threads=self.threads, spin=0.0)
            self.proc = proc
            proc.connect(self.start_timeout)
        except BaseException as e:
            if not self._stop.is_set():
                self._post(self._died, generation, f"could not start: {type(e).__name__}: {e}")
            return
        while not self._stop.is_set():
            try:
                msg = proc.channel.recv(timeout=POLL)
            except TimeoutError:
                if not proc.alive():
                    break
                continue
            except (ChannelClosed, TransportError):
                break
            if isinstance(msg, tuple) and msg[0] == "fetch":
                self._fetch(msg[1], msg[2])
            else:
                self._post(self.on_message, self, msg)
        if not self._stop.is_set():
            proc.proc.join(1.0)
            self._post(self._died, generation, f"exit code {proc.proc.exitcode}")

    def _died(self, generation: int, why: str) -> None:
        if generation == self.generation and not self._stop.is_set():
            self.ready = False
            self.on_death(self, why)

    def _fetch(self, store: str, keys: list[Any]) -> None:
        values = self.stores[store].fetch(keys) if store in self.stores else {}
        self.send(("fetched", values))
        if self.fetched is not None:
            self.fetched(store, len(values))

    def send(self, msg: Any) -> None:
        assert self.proc is not None
        with self._send_lock:
            self.proc.channel.send(msg)

    def cancel(self, batch: int) -> None:
        """Interrupt batch ``batch`` if it is what the worker runs (see ``reflow.serve.worker``)."""
        self._cancel.value = batch
        if self.proc is not None:
            self.proc.signal(CANCEL_SIGNAL)

    def kill(self) -> None:
        """Kill the process (a batch stuck in native code); the receiver thread then reports the death."""
        if self.proc is not None and self.proc.proc.pid is not None:
            with contextlib.suppress(Exception):
                self.proc.proc.kill()

    def restart(self) -> None:
        """Replace a dead worker with a fresh one."""
        self.restarts += 1
        self._close_process(join=False)
        self.start()

    def _close_process(self, join: bool = True) -> None:
        proc, thread = self.proc, self._thread
        self._stop.set()
        if thread is not None and thread is not threading.current_thread() and join:
            thread.join(POLL * 20)
        if proc is not None:
            proc.close(STOP, timeout=2.0)
        self.proc, self._thread = None, None

    def close(self) -> None:
        """Stop the worker and its thread; free the channel and shared memory. Idempotent."""
        self.ready = False
        deadline = time.monotonic() + 10
        while self._thread is not None and self.proc is None and time.monotonic() < deadline:
            time.sleep(0.01)  # a start in progress: let it get its process before we stop it
        self._close_process()
