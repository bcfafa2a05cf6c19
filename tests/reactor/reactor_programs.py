"""Small reactors shared by the reactor and runtime tests."""

from __future__ import annotations

from typing import Any

from reflow.reactor import Reactor, reaction


class Log:
    """An append-only record of what reactions saw: (tag as tuple, who, what)."""

    def __init__(self) -> None:
        self.items: list[tuple[tuple[int, int], str, Any]] = []

    def add(self, r: Reactor, what: Any) -> None:
        self.items.append(((r.tag.time, r.tag.microstep), r.path, what))


class Source(Reactor):
    """Sends 1, 2, 3, ... on a timer."""

    def __init__(self, name: str = "source", period: int = 10, offset: int = 0) -> None:
        super().__init__(name)
        self.t = self.timer("t", offset=offset, period=period)
        self.out = self.output("out", int)
        self.n = 0

    @reaction(triggers="t", effects="out")
    def emit(self) -> None:
        self.n += 1
        self.out.set(self.n)


class Recorder(Reactor):
    """Logs every value it receives, and its shutdown."""

    def __init__(self, log: Log, name: str = "recorder") -> None:
        super().__init__(name)
        self.log = log
        self.inp = self.input("in")

    @reaction(triggers="in")
    def record(self) -> None:
        self.log.add(self, self.inp.value)

    @reaction(triggers="shutdown")
    def bye(self) -> None:
        self.log.add(self, "shutdown")


class Add(Reactor):
    """out = in + k."""

    def __init__(self, name: str, k: int = 1) -> None:
        super().__init__(name)
        self.k = k
        self.inp = self.input("in", int)
        self.out = self.output("out", int)

    @reaction(triggers="in", effects="out")
    def add(self) -> None:
        self.out.set(self.inp.get() + self.k)
