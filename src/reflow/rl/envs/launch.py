"""How env-bank workers start: from a fork server, without re-running the caller's script, deaf to Ctrl-C.

A fork server. A spawned worker is a fresh interpreter that imports numpy, gymnasium and reflow again: 0.6 s
per worker on the 2-core test machine, paid by every bank. multiprocessing's ``forkserver`` spawns one
server process once, which imports those modules (``PRELOAD``) and then forks each worker from itself
(tens of ms). It is as safe as ``spawn``: the server is a fresh single-threaded process, not a fork of the
caller with its threads and torch state. (Environment variables changed after the server started do not
reach later workers.)

Not the caller's ``__main__``. multiprocessing normally runs the caller's main script again in each child,
so that functions defined there can be unpickled. A script without an ``if __name__ == "__main__":`` guard
then starts banks recursively and its workers die at start; a script read from standard input
(``python - <<EOF``) cannot be run again at all. A bank never needs the script: env constructors, wrappers
and classes defined there travel by value with cloudpickle (``spec.py``). So while a worker starts, the
caller's ``__main__`` is hidden from multiprocessing (``_without_main``).

Ctrl-C. A terminal sends SIGINT to every process of the foreground group, workers included; it is the
caller's to handle (it closes the bank), and a worker would only print a KeyboardInterrupt traceback. So the
fork server is started with SIGINT ignored, which its forked workers keep, and each worker also ignores it
from its first line (``worker_main``).
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import signal
import sys
import threading
import types
from collections.abc import Callable, Iterator
from multiprocessing import forkserver
from multiprocessing.process import BaseProcess
from typing import Any

PRELOAD = ["reflow.rl.envs.worker"]
_lock = threading.Lock()


@contextlib.contextmanager
def _sigint_ignored() -> Iterator[None]:
    """SIGINT ignored meanwhile (from the main thread only, where handlers can be set)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)


@contextlib.contextmanager
def _without_main() -> Iterator[None]:
    """Hide the caller's ``__main__`` from multiprocessing, which would run it again in the child."""
    main = sys.modules["__main__"]
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        sys.modules["__main__"] = main


def ensure_server() -> None:
    """Start the fork server (with ``PRELOAD`` imported and SIGINT ignored) unless it runs already."""
    with _lock, _sigint_ignored(), _without_main():
        mp.get_context("forkserver").set_forkserver_preload(PRELOAD)
        forkserver.ensure_running()


def start_process(target: Callable[..., None], name: str, args: tuple[Any, ...]) -> BaseProcess:
    """Start ``target(*args)`` in a daemon process forked by the fork server. ``args`` are pickled by
    reference (module-level names), so anything from the caller's script must arrive as cloudpickled bytes."""
    ensure_server()
    proc = mp.get_context("forkserver").Process(target=target, name=name, args=args, daemon=True)
    with _lock, _without_main():
        proc.start()
    return proc
