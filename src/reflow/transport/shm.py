"""Named shared-memory segments with numpy views, owned by whoever creates them.

This is the bottom layer of the transport: the object store, channels and env banks all allocate here. The
creator of a segment owns it and unlinks it on ``close()``; every segment created in a process is also
registered so that it is unlinked at interpreter exit (normal exit, an uncaught exception, SIGTERM), so a
crashed run leaves nothing behind in /dev/shm. Attaching processes never unlink, and they detach from
Python's resource tracker, which would otherwise unlink segments it does not own when they exit.

Names start with ``reflow-<pid>-`` so leaks are attributable and tests can look for them.
"""

from __future__ import annotations

import atexit
import itertools
import os
import signal
import threading
import weakref
from multiprocessing import resource_tracker, shared_memory
from types import FrameType, TracebackType
from typing import Any

import numpy as np

PREFIX = "reflow-"
_counter = itertools.count()
_owned: weakref.WeakValueDictionary[str, SharedSegment] = weakref.WeakValueDictionary()
_lock = threading.Lock()


def _new_name() -> str:
    return f"{PREFIX}{os.getpid()}-{next(_counter)}"


class SharedSegment:
    """One shared-memory segment. ``create`` makes (and owns) it; ``attach`` maps an existing one."""

    def __init__(self, shm: shared_memory.SharedMemory, owner: bool) -> None:
        self._shm: shared_memory.SharedMemory | None = shm
        self.name: str = shm.name
        self.size: int = shm.size
        self.owner = owner
        if owner:
            with _lock:
                _owned[self.name] = self

    @classmethod
    def create(cls, size: int) -> SharedSegment:
        if size <= 0:
            raise ValueError(f"shared segment size must be positive, got {size}")
        return cls(shared_memory.SharedMemory(name=_new_name(), create=True, size=size), owner=True)

    @classmethod
    def attach(cls, name: str) -> SharedSegment:
        shm = shared_memory.SharedMemory(name=name, create=False)
        # The attaching process does not own the segment: keep the resource tracker from unlinking it.
        try:
            resource_tracker.unregister(shm._name, "shared_memory")  # type: ignore[attr-defined]
        except Exception:
            pass
        return cls(shm, owner=False)

    @property
    def buf(self) -> memoryview:
        if self._shm is None:
            raise ValueError(f"shared segment {self.name} is closed")
        buf = self._shm.buf
        assert buf is not None
        return buf

    def ndarray(self, shape: tuple[int, ...], dtype: Any, offset: int = 0) -> np.ndarray[Any, Any]:
        """A numpy view on the segment (no copy). Views must be dropped before ``close()``."""
        return np.ndarray(shape, dtype=dtype, buffer=self.buf, offset=offset)

    def close(self) -> None:
        """Unmap; the owner also unlinks. Safe to call twice."""
        shm, self._shm = self._shm, None
        if shm is None:
            return
        try:
            shm.close()
        except BufferError:
            # Live numpy views still export the buffer; the mapping goes when they do.
            pass
        if self.owner:
            with _lock:
                _owned.pop(self.name, None)
            try:
                shm.unlink()
            except FileNotFoundError:
                pass

    def __enter__(self) -> SharedSegment:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def __del__(self) -> None:
        if self.owner and self._shm is not None:
            self.close()


def unlink_all_owned() -> None:
    """Unlink every segment this process still owns (called at exit and on SIGTERM)."""
    with _lock:
        segs = list(_owned.values())
    for s in segs:
        s.close()


def leaked_segments(pid: int | None = None) -> list[str]:
    """Names in /dev/shm created by reflow (by ``pid`` if given): what tests check is empty."""
    try:
        names = os.listdir("/dev/shm")
    except FileNotFoundError:
        return []
    prefix = PREFIX if pid is None else f"{PREFIX}{pid}-"
    return sorted(n for n in names if n.startswith(prefix))


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    unlink_all_owned()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


atexit.register(unlink_all_owned)
if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
    signal.signal(signal.SIGTERM, _on_sigterm)
