"""``thread_caps`` is one critical section: a thread that starts workers while another is starting its own
neither sees the other's thread variables nor changes the environment under the other's fork and exec."""

from __future__ import annotations

import os
import threading

import pytest

from reflow.runtime.workers import THREAD_VARS, thread_caps


def test_a_second_thread_waits_for_the_first_and_gets_its_own_caps(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in THREAD_VARS:
        monkeypatch.delenv(name, raising=False)
    inside, release = threading.Event(), threading.Event()
    seen: list[str | None] = []

    def first() -> None:
        with thread_caps(3):
            inside.set()
            release.wait(10)

    def second() -> None:
        inside.wait(10)
        with thread_caps(2):
            seen.append(os.environ.get("OMP_NUM_THREADS"))

    a, b = threading.Thread(target=first), threading.Thread(target=second)
    a.start()
    b.start()
    b.join(1.0)  # without the critical section it is done by now, having seen the first thread's caps
    release.set()
    a.join(10)
    b.join(10)
    assert seen == ["2"]
    assert all(name not in os.environ for name in THREAD_VARS)  # both restored the environment
