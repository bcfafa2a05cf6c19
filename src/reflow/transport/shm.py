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
import contextlib
import functools
import itertools
import mmap
import os
import signal
import threading
import weakref
from multiprocessing import shared_memory
from types import FrameType, TracebackType
from typing import Any

import numpy as np

PREFIX = "reflow-"
SHM_DIR = "/dev/shm"
_counter = itertools.count()
_owned: weakref.WeakValueDictionary[str, SharedSegment] = weakref.WeakValueDictionary()
_lock = threading.Lock()


def segment_path(name: str) -> str:
    """Where segment ``name`` lives in the file system."""
    return f"{SHM_DIR}/{name.lstrip('/')}"


def _new_name() -> str:
    return f"{PREFIX}{os.getpid()}-{next(_counter)}"


class _Attached:
    """A read-write mapping of an existing segment, with the parts of SharedMemory that SharedSegment uses."""

    def __init__(self, name: str) -> None:
        fd = os.open(segment_path(name), os.O_RDWR)
        try:
            self.size = os.fstat(fd).st_size
            self._mmap: mmap.mmap | None = mmap.mmap(fd, self.size)
        finally:
            os.close(fd)
        self.name = name
        self._buf: memoryview | None = memoryview(self._mmap)  # dropped by ``_drop_mapping``

    @property
    def buf(self) -> memoryview | None:
        return self._buf


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
        # The attaching process does not own the segment, so it must stay out of Python's resource tracker
        # (which would unlink it at exit, or, when the tracker is shared with the owner, lose the owner's
        # registration): map the file directly instead of going through SharedMemory.
        return cls(_Attached(name), owner=False)  # type: ignore[arg-type]

    @property
    def buf(self) -> memoryview:
        if self._shm is None:
            raise ValueError(f"shared segment {self.name} is closed")
        buf = self._shm.buf
        assert buf is not None
        return buf

    @functools.cached_property
    def address(self) -> int:
        """Where the mapping starts in this process's memory (an array at ``offset`` starts at this plus
        ``offset``)."""
        return int(np.frombuffer(self.buf, np.uint8, 1).__array_interface__["data"][0])

    def ndarray(self, shape: tuple[int, ...], dtype: Any, offset: int = 0) -> np.ndarray[Any, Any]:
        """A numpy view on the segment (no copy); it may outlive ``close()`` (see there)."""
        return np.ndarray(shape, dtype=dtype, buffer=self.buf, offset=offset)

    def close(self) -> None:
        """Unmap (now, or with the last live numpy view); the owner also unlinks. Safe to call twice."""
        shm, self._shm = self._shm, None
        if shm is None:
            return
        _drop_mapping(shm)
        if self.owner:
            with _lock:
                _owned.pop(self.name, None)
            with contextlib.suppress(FileNotFoundError):
                shm.unlink()

    def __enter__(self) -> SharedSegment:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __del__(self) -> None:
        if self.owner and self._shm is not None:
            self.close()


def _drop_mapping(shm: Any) -> None:
    """Drop our references to the mapping and close the descriptor, never unmapping explicitly.

    numpy arrays made on ``buf`` keep a reference to it but hold no buffer export, so ``SharedMemory.close``
    would unmap memory under live arrays (a segfault on their next access). Without our references the mapping
    goes at once if no array is left, else with the last one; ``SharedMemory.__del__`` finds nothing to do."""
    shm._buf = None
    shm._mmap = None
    if getattr(shm, "_fd", -1) >= 0:
        os.close(shm._fd)
        shm._fd = -1


def unlink_all_owned() -> None:
    """Unlink every segment this process still owns (called at exit and on SIGTERM)."""
    with _lock:
        segs = list(_owned.values())
    for s in segs:
        s.close()


def unlink_segments_of(pid: int) -> list[str]:
    """Unlink the segments a (dead) process ``pid`` created and could not unlink, e.g. after a SIGKILL.

    Only for a parent cleaning up after a child it knows is dead; returns the names it removed."""
    names = leaked_segments(pid)
    for name in names:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(segment_path(name))
    return names


def leaked_segments(pid: int | None = None) -> list[str]:
    """Names in /dev/shm created by reflow (by ``pid`` if given): what tests check is empty."""
    try:
        names = os.listdir(SHM_DIR)
    except FileNotFoundError:
        return []
    prefix = PREFIX if pid is None else f"{PREFIX}{pid}-"
    return sorted(n for n in names if n.startswith(prefix))


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` is running (not gone, not a zombie)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    unlink_all_owned()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


atexit.register(unlink_all_owned)
_main = threading.current_thread() is threading.main_thread()
if _main and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
    signal.signal(signal.SIGTERM, _on_sigterm)
