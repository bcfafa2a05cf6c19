"""Shared fixtures. ``no_leaks`` checks that a test leaves no shared memory and no child processes behind."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import pytest

from reflow.transport.shm import leaked_segments


def child_pids() -> set[int]:
    """Live (non-zombie) child processes of this process, read from /proc."""
    me = os.getpid()
    out: set[int] = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        state, ppid = fields[0], int(fields[1])
        if ppid == me and state != "Z":
            out.add(int(entry))
    return out


@pytest.fixture
def no_leaks() -> Iterator[None]:
    """Fail the test if it leaves reflow shared-memory segments or child processes behind."""
    shm_before = set(leaked_segments())
    kids_before = child_pids()
    yield
    deadline = time.monotonic() + 5.0
    while True:
        new_shm = sorted(set(leaked_segments()) - shm_before)
        new_kids = sorted(child_pids() - kids_before)
        if not new_shm and not new_kids:
            return
        if time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert not new_shm, f"test leaked shared memory segments: {new_shm}"
    assert not new_kids, f"test left child processes running: {new_kids}"
