"""A counter on a timer, a doubler, and a printer: the smallest complete reactor program.

    reflow run examples/reactors/counter.py
    python examples/reactors/counter.py
"""

from __future__ import annotations

from reflow.reactor import Reactor, msec, reaction, run


class Counter(Reactor):
    """Counts timer ticks and sends the count."""

    def __init__(self, period: int = msec(10)) -> None:
        super().__init__("counter")
        self.tick = self.timer("tick", offset=0, period=period)
        self.out = self.output("out", int)
        self.count = 0

    @reaction(triggers="tick", effects="out")
    def step(self) -> None:
        self.count += 1
        self.out.set(self.count)


class Double(Reactor):
    """Doubles what it receives."""

    def __init__(self) -> None:
        super().__init__("double")
        self.inp = self.input("in", int)
        self.out = self.output("out", int)

    @reaction(triggers="in", effects="out")
    def double(self) -> None:
        self.out.set(2 * self.inp.get())


class Printer(Reactor):
    """Prints each value with its tag and stops the program after ``limit`` values."""

    def __init__(self, limit: int) -> None:
        super().__init__("printer")
        self.inp = self.input("in", int)
        self.limit = limit
        self.seen: list[int] = []

    @reaction(triggers="in")
    def show(self) -> None:
        self.seen.append(self.inp.get())
        print(f"  tag {self.tag}: {self.inp.get()}")
        if len(self.seen) == self.limit:
            self.request_stop()

    @reaction(triggers="shutdown")
    def bye(self) -> None:
        print(f"  shutdown at tag {self.tag} after {len(self.seen)} values: {self.seen}")


class Main(Reactor):
    """counter -> double -> printer."""

    def __init__(self, limit: int = 5) -> None:
        super().__init__("main")
        counter = self.add(Counter())
        double = self.add(Double())
        self.printer = self.add(Printer(limit))
        self.connect(counter.out, double.inp)
        self.connect(double.out, self.printer.inp)

    @reaction(triggers="startup")
    def hello(self) -> None:
        print(f"main starts at tag {self.tag}")


def main() -> Reactor:
    return Main()


if __name__ == "__main__":
    run(main())
