"""Shared fixtures. ``no_leaks`` checks that a test leaves no shared memory and no child processes behind."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from multiprocessing import resource_tracker

import pytest

from reflow.transport.shm import PREFIX, leaked_segments

# A shell that starts the suite in the background (`make test &`) ignores SIGINT in it, and an ignored signal
# stays ignored across exec: the Ctrl-C tests' children would never see their SIGINT. A handler is reset to
# the default on exec, so the children start with Ctrl-C working, as under a terminal.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state, parent pid) of a live process, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return fields[0], int(fields[1])


def child_pids() -> set[int]:
    """Live (non-zombie) descendants of this process, read from /proc (env-bank workers are forked by
    multiprocessing's fork server, a child of this process, so they are grandchildren)."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (stat := _proc_stat(int(entry))) and stat[0] != "Z":
            parents.setdefault(stat[1], []).append(int(entry))
    out: set[int] = set()
    todo = [os.getpid()]
    while todo:
        for kid in parents.get(todo.pop(), []):
            if kid not in out:
                out.add(kid)
                todo.append(kid)
    return out


def _is_ours(segment: str) -> bool:
    """A segment counts against this test run if its creator is this process, a descendant, or dead.

    Segments of live unrelated processes (another test run on the same machine) are not ours to judge.
    """
    try:
        creator = int(segment[len(PREFIX):].split("-", 1)[0])
    except ValueError:
        return True
    if _proc_stat(creator) is None:
        return True  # its creator died and left it behind
    me, pid = os.getpid(), creator
    while pid > 1:
        if pid == me:
            return True
        stat = _proc_stat(pid)
        if stat is None:
            return False
        pid = stat[1]
    return False


@pytest.fixture(autouse=True, scope="session")
def _resource_tracker_running() -> None:
    """Start Python's resource tracker and the env banks' fork server once up front, so ``no_leaks`` never
    counts them as leaked children."""
    from reflow.rl.envs.launch import ensure_server

    resource_tracker.ensure_running()
    ensure_server()


@pytest.fixture
def no_leaks() -> Iterator[None]:
    """Fail the test if it leaves reflow shared-memory segments or child processes behind."""
    shm_before = set(leaked_segments())
    kids_before = child_pids()
    yield
    deadline = time.monotonic() + 5.0
    while True:
        new_shm = sorted(s for s in set(leaked_segments()) - shm_before if _is_ours(s))
        new_kids = sorted(child_pids() - kids_before)
        if not new_shm and not new_kids:
            return
        if time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert not new_shm, f"test leaked shared memory segments: {new_shm}"
    assert not new_kids, f"test left child processes running: {new_kids}"
