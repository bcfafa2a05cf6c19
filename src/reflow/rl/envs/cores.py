"""How many cores are free for a bank's processes: measured, not assumed from ``os.cpu_count()``.

A lock-step bank with more processes than free cores is slower than one process stepping every env: each
step waits for the slowest process, and a process that shares a core with another job runs half the time
(with one of two cores busy, two processes made 0.72x the steps of a plain loop). So before it starts its
workers a bank measures the free cores: over a short window, the idle time of the cores this process may run
on, plus the CPU time this process itself used meanwhile (it is about to hand that work over). A
``CoreProbe`` opens the window when the bank starts building and reads it just before the workers start, so
the bank's own set-up is the window and the wait is only what is left of ``MIN_WINDOW_S``.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass

MIN_WINDOW_S = 0.1
SPARE = 0.3  # a core counts as free from 70% idle on (/proc/stat counts in 10 ms ticks)


def _cpus() -> set[int]:
    try:
        return os.sched_getaffinity(0)
    except AttributeError:  # not Linux
        return set(range(os.cpu_count() or 1))


def _idle_seconds(cpus: set[int]) -> float | None:
    """Idle time so far of ``cpus`` (seconds, from /proc/stat), or None where there is no /proc/stat."""
    try:
        with open("/proc/stat") as f:
            lines = f.readlines()
    except OSError:
        return None
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for line in lines:
        name, *fields = line.split()
        if name.startswith("cpu") and name[3:].isdigit() and int(name[3:]) in cpus:
            total += int(fields[3]) + int(fields[4])  # idle + iowait
    return total / tick


def _own_cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


@dataclass(frozen=True)
class CoreCount:
    """What a probe found: the cores this process may use and how many of them were free."""

    usable: int
    free: float

    def processes_for(self, wanted: int) -> int:
        """How many of ``wanted`` processes can run at once: at most the free cores, at least one."""
        return max(1, min(wanted, math.floor(self.free + SPARE)))


class CoreProbe:
    """Opens a measuring window now; ``read()`` closes it (waiting until ``MIN_WINDOW_S`` has passed)."""

    def __init__(self) -> None:
        self.cpus = _cpus()
        self._t0 = time.monotonic()
        self._idle0 = _idle_seconds(self.cpus)
        self._own0 = _own_cpu_seconds()

    def read(self) -> CoreCount:
        left = MIN_WINDOW_S - (time.monotonic() - self._t0)
        if left > 0:
            time.sleep(left)
        idle1 = _idle_seconds(self.cpus)
        elapsed = time.monotonic() - self._t0
        usable = len(self.cpus)
        if self._idle0 is None or idle1 is None or elapsed <= 0:
            return CoreCount(usable, float(usable))
        spare = (idle1 - self._idle0) + (_own_cpu_seconds() - self._own0)
        return CoreCount(usable, max(0.0, min(float(usable), spare / elapsed)))
