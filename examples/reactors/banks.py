"""Banks, multiports, ``after`` delays, logical actions and a deadline, in one small program.

A scatter reactor sends one number to each member of a bank of squarers through a multiport; the bank's
outputs come back to a gather reactor through a connection ``after`` 5 ms. Each squarer also schedules a
logical action to echo its value one microstep later. The gather reaction has a deadline: if it starts more
than 50 ms (physical) after its tag's logical time, its handler runs instead (in fast mode, physical time
lags logical time, so the deadline holds).

    reflow run examples/reactors/banks.py --workers 2
"""

from __future__ import annotations

from reflow.reactor import Reactor, msec, reaction, run

WIDTH = 4


class Scatter(Reactor):
    def __init__(self, width: int) -> None:
        super().__init__("scatter")
        self.tick = self.timer("tick", offset=0, period=msec(20))
        self.out = self.output_multiport("out", width, int)
        self.round = 0

    @reaction(triggers="tick", effects="out")
    def send(self) -> None:
        self.round += 1
        for i, port in enumerate(self.out):
            port.set(10 * self.round + i)


class Squarer(Reactor):
    def __init__(self) -> None:
        super().__init__("squarer")
        self.inp = self.input("in", int)
        self.out = self.output("out", int)
        self.echo = self.logical_action("echo")
        self.echoes = 0

    @reaction(triggers="in", effects=("out", "echo"))
    def square(self) -> None:
        self.out.set(self.inp.get() ** 2)
        self.echo.schedule(self.inp.get())

    @reaction(triggers="echo")
    def count_echo(self) -> None:
        self.echoes += 1


class Gather(Reactor):
    def __init__(self, width: int) -> None:
        super().__init__("gather")
        self.inp = self.input_multiport("in", width, int)
        self.late = 0

    @reaction(triggers="in", deadline=msec(50), on_deadline="too_late")
    def show(self) -> None:
        values = [p.value for p in self.inp]
        print(f"  tag {self.tag}: squares {values}")
        if self.logical_time >= msec(60):
            self.request_stop()

    def too_late(self) -> None:
        self.late += 1
        print(f"  tag {self.tag}: deadline missed, values dropped")


class Main(Reactor):
    def __init__(self, width: int = WIDTH) -> None:
        super().__init__("main")
        scatter = self.add(Scatter(width))
        self.squarers = self.bank("squarers", width, lambda i: Squarer())
        self.gather = self.add(Gather(width))
        self.connect(scatter.out, [s.inp for s in self.squarers])
        self.connect([s.out for s in self.squarers], self.gather.inp, after=msec(5))


def main() -> Reactor:
    return Main()


if __name__ == "__main__":
    run(main(), workers=2)
