"""Worker processes: one ``spawn`` process and the reflow ``Channel`` its parent talks to it over.

What every process executor needs and nothing more: start a process whose first argument is the channel's
name (it opens side ``"b"``), cap its numeric libraries' threads (``thread_caps``), tell whether it is alive,
signal it, and stop it on every exit path: ask it to stop, kill it if it does not, close the channel and
unlink any shared memory a killed process could not unlink itself.

Threads. Numeric libraries start one thread per core in every process, so P workers running torch or BLAS
at once would put P times as many threads on the cores as there are cores. ``thread_caps`` sets
``OMP_NUM_THREADS``, ``OPENBLAS_NUM_THREADS`` and ``MKL_NUM_THREADS`` in the environment of the processes
started meanwhile, where torch, OpenBLAS and MKL read them when they load. A user who set any of them keeps
their own setting. Setting them and starting the processes is one critical section (``_ENVIRON``): threads
that start workers at the same time (the serving pool starts each from a thread of its own) must not change
the environment while another thread forks and execs, where a child can inherit a half-changed ``environ``
(its exec then fails: exit code 255, no output, seen under load) or find another thread's caps already gone.
"""

from __future__ import annotations

import contextlib
import itertools
import multiprocessing as mp
import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from reflow.errors import WorkerCrashed
from reflow.transport import Channel
from reflow.transport.shm import unlink_segments_of

POLL = 0.05  # seconds between checks that the process is still alive while waiting for it
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
_names = itertools.count()
_ENVIRON = threading.RLock()  # held while the thread variables are set and processes start (docstring)


@contextlib.contextmanager
def thread_caps(threads: int) -> Iterator[None]:
    """Set the thread variables for the processes started meanwhile, unless the user set any of them."""
    with _ENVIRON:
        user_set = any(name in os.environ for name in THREAD_VARS)
        added = {} if user_set else {name: str(threads) for name in THREAD_VARS}
        os.environ.update(added)
        try:
            yield
        finally:
            for name in added:
                os.environ.pop(name, None)


class WorkerProcess:
    """A spawned process running ``target(channel_name, *args)`` and side ``"a"`` of their channel."""

    def __init__(self, target: Callable[..., None], args: tuple[Any, ...], *, label: str, threads: int = 1,
                 **channel_options: Any) -> None:
        self.label = label
        self.name = f"reflow-{label}-{os.getpid()}-{next(_names)}"
        self.channel = Channel(self.name, "a", **channel_options)
        try:
            with thread_caps(threads):
                self.proc = mp.get_context("spawn").Process(target=target, args=(self.name, *args),
                                                            daemon=True, name=f"reflow-{label}")
                self.proc.start()
        except BaseException:
            self.channel.close()
            raise

    @property
    def pid(self) -> int | None:
        return self.proc.pid

    def connect(self, timeout: float) -> None:
        """Wait until the process has opened its side of the channel; WorkerCrashed if it exits first."""
        end = time.monotonic() + timeout
        while True:
            try:
                self.channel.connect(min(POLL, max(0.0, end - time.monotonic())))
                return
            except TimeoutError:
                if not self.proc.is_alive():
                    raise WorkerCrashed(f"worker process {self.label} (pid {self.proc.pid}) exited with code "
                                        f"{self.proc.exitcode} before it connected; its output says why") \
                        from None
                if time.monotonic() > end:
                    raise

    def recv(self, timeout: float) -> Any:
        """The next message from the process; WorkerCrashed if it exits first."""
        end = time.monotonic() + timeout
        while True:
            try:
                return self.channel.recv(timeout=min(POLL, max(0.0, end - time.monotonic())))
            except TimeoutError:
                if not self.proc.is_alive():
                    raise WorkerCrashed(f"worker process {self.label} (pid {self.proc.pid}) exited with code "
                                        f"{self.proc.exitcode}") from None
                if time.monotonic() > end:
                    raise

    def alive(self) -> bool:
        return self.proc.is_alive()

    def signal(self, signum: int) -> None:
        """Send a signal, if the process still runs."""
        if self.proc.pid is not None and self.proc.is_alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signum)

    def close(self, stop: Any = None, timeout: float = 5.0) -> None:
        """Ask the process to stop (send ``stop``, if given), kill it after ``timeout`` s, free everything."""
        if stop is not None and self.proc.is_alive():
            with contextlib.suppress(Exception):
                self.channel.send(stop)
        self.proc.join(timeout)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join(timeout)
        self.channel.close()
        if self.proc.pid is not None:
            unlink_segments_of(self.proc.pid)  # what a killed process could not unlink itself
