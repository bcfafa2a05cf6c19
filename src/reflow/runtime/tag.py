"""Logical time: tags and time units.

A tag is ``(time, microstep)``: ``time`` is logical nanoseconds since the program started, ``microstep``
orders events that share a time (a zero-delay action or a request to stop lands one microstep later). Tags
are totally ordered, lexicographically, and everything the scheduler does is ordered by them. A tag is a
named tuple, so that the event queue compares and hashes tags at C speed.
"""

from __future__ import annotations

from typing import NamedTuple

NSEC = 1
USEC = 1_000
MSEC = 1_000_000
SEC = 1_000_000_000


def nsec(n: float) -> int:
    """``n`` nanoseconds, as integer nanoseconds."""
    return round(n)


def usec(n: float) -> int:
    """``n`` microseconds, as integer nanoseconds."""
    return round(n * USEC)


def msec(n: float) -> int:
    """``n`` milliseconds, as integer nanoseconds."""
    return round(n * MSEC)


def sec(n: float) -> int:
    """``n`` seconds, as integer nanoseconds."""
    return round(n * SEC)


def minutes(n: float) -> int:
    """``n`` minutes, as integer nanoseconds."""
    return round(n * 60 * SEC)


class Tag(NamedTuple):
    """A point in logical time. ``Tag(0, 0)`` is startup."""

    time: int
    microstep: int = 0

    def delay(self, ns: int) -> Tag:
        """The tag ``ns`` later; a zero delay means the next microstep (a strictly later tag)."""
        if ns < 0:
            raise ValueError(f"a delay must not be negative, got {ns} ns")
        if ns == 0:
            return Tag(self.time, self.microstep + 1)
        return Tag(self.time + ns, 0)

    def __str__(self) -> str:
        return f"({format_ns(self.time)}, {self.microstep})"


def format_ns(ns: int) -> str:
    """A readable duration: ``1500000`` -> ``'1.5 ms'``."""
    for unit, size in (("s", SEC), ("ms", MSEC), ("us", USEC)):
        if abs(ns) >= size:
            return f"{ns / size:g} {unit}"
    return f"{ns} ns"
