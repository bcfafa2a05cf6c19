"""Ctrl-C during training: the first one stops the run at its next step, a second one stops it at once.

A KeyboardInterrupt raised wherever the main thread happens to be (inside an optimizer step, between a
bank's command and its answer) leaves no consistent state to save. So while training runs, SIGINT only
sets an event; the env reactor sees it before its next step and asks the program to stop, which then ends
as it would at its step budget: shutdown reactions run, the bank closes, and the caller saves the
checkpoint and log of a run that is whole up to that step. A second Ctrl-C raises KeyboardInterrupt as
usual, for a run that does not reach its next step. Worker processes ignore SIGINT (``rl/envs/launch.py``).
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType


@contextlib.contextmanager
def first_interrupt_stops() -> Iterator[threading.Event]:
    """Inside: SIGINT sets the event the first time and raises KeyboardInterrupt after that. Off the main
    thread (where signal handlers cannot be set) the event is never set."""
    event = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield event
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        if event.is_set():
            raise KeyboardInterrupt
        event.set()

    old = signal.signal(signal.SIGINT, handler)
    try:
        yield event
    finally:
        signal.signal(signal.SIGINT, old)


@contextlib.contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Inside: SIGINT is held back (a checkpoint being written is finished); raised as KeyboardInterrupt
    on the way out if it came. Main thread only; elsewhere a no-op."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    came: list[int] = []
    old = signal.signal(signal.SIGINT, lambda signum, frame: came.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)
    if came:
        raise KeyboardInterrupt
