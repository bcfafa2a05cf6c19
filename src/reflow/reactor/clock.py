"""Lingua Franca's time API (``lf.time`` and ``lf.tag()``), for use inside a reaction.

Logical time is kept in nanoseconds since the program started (``logical_elapsed``, also
``Reactor.logical_time``); ``start`` is the wall-clock time (ns since the epoch) at which it started, so
``logical() == start() + logical_elapsed()``. Physical time is the wall clock (``physical``) or the time
since the start (``physical_elapsed``, also ``Reactor.physical_time()``). These read the running reaction's
invocation, so they give the same answers in a worker thread or a worker process; outside a reaction they
raise ``LifecycleError``. Module functions rather than reactor attributes, so that they never collide with a
reactor's own state (LF programs often keep a ``start_time``).

```python
from reflow.reactor import Reactor, clock, reaction, run

class Now(Reactor):
    @reaction(triggers="startup")
    def show(self) -> None:
        assert clock.logical() == clock.start() + clock.logical_elapsed()
        assert clock.physical_elapsed() >= 0 and clock.tag().microstep == 0

run(Now())
```
"""

from __future__ import annotations

import time

from reflow.reactor.context import current
from reflow.runtime.tag import Tag


def tag() -> Tag:
    """The current tag (elapsed logical time, microstep)."""
    return current("clock", "tag()").invocation.tag


def start() -> int:
    """The wall-clock time (ns since the epoch) at which logical time started."""
    return current("clock", "start()").invocation.start_time


def logical() -> int:
    """The current logical time, as wall-clock ns since the epoch."""
    inv = current("clock", "logical()").invocation
    return inv.start_time + inv.tag.time


def logical_elapsed() -> int:
    """The current logical time, as ns since the start."""
    return current("clock", "logical_elapsed()").invocation.tag.time


def physical() -> int:
    """Physical time: the wall clock, ns since the epoch."""
    current("clock", "physical()")
    return time.time_ns()


def physical_elapsed() -> int:
    """Physical time since the start, ns."""
    return time.time_ns() - current("clock", "physical_elapsed()").invocation.start_time
