"""Reactors: deterministic, concurrent components in logical time (after Lingua Franca).

```python
from reflow.reactor import Reactor, reaction, run, msec

class Counter(Reactor):
    def __init__(self) -> None:
        super().__init__("counter")
        self.tick = self.timer("tick", offset=0, period=msec(10))
        self.out = self.output("out", int)
        self.count = 0

    @reaction(triggers="tick", effects="out")
    def step(self) -> None:
        self.count += 1
        self.out.set(self.count)

run(Counter(), timeout=msec(100))
```
See docs/reactors.md.
"""

from reflow.reactor import clock
from reflow.reactor.connections import interleaved
from reflow.reactor.elements import Input, LogicalAction, Mode, Output, PhysicalAction, Timer, Watchdog
from reflow.reactor.reaction import reaction
from reflow.reactor.reactor import Phase, Reactor
from reflow.reactor.run import reaction_graph_of, run
from reflow.runtime.scheduler import RunResult, TraceEntry
from reflow.runtime.tag import Tag, minutes, msec, nsec, sec, usec

__all__ = [
           "Input",
           "LogicalAction",
           "Mode",
           "Output",
           "Phase",
           "PhysicalAction",
           "Reactor",
           "RunResult",
           "Tag",
           "Timer",
           "TraceEntry",
           "Watchdog",
           "clock",
           "interleaved",
           "minutes",
           "msec",
           "nsec",
           "reaction",
           "reaction_graph_of",
           "run",
           "sec",
           "usec",
]
