"""Determinism: many parallel stateful reactors give the same trace for 1, 2 and 4 workers, run after run."""

from __future__ import annotations

import time

import numpy as np

from reflow.reactor import Reactor, reaction, run
from reflow.runtime.scheduler import TraceEntry


class Noisy(Reactor):
    """Stateful, seeded, and slow by a varying amount so threads finish in a different order each time."""

    def __init__(self, seed: int) -> None:
        super().__init__("noisy")
        self.inp = self.input("in", int)
        self.fb = self.input("fb", int, required=False)
        self.out = self.output("out", int)
        self.echo = self.logical_action("echo")
        self.rng = np.random.default_rng(seed)
        self.state = seed

    @reaction(triggers=("in", "fb"), effects=("out", "echo"))
    def step(self) -> None:
        if self.rng.random() < 0.3:
            time.sleep(0.0005)
        x = (self.inp.value or 0) + 3 * (self.fb.value or 0)
        self.state = (self.state * 31 + x + int(self.rng.integers(0, 100))) % 1_000_003
        self.out.set(self.state)
        if self.state % 3 == 0:
            self.echo.schedule(self.state)

    @reaction(triggers="echo", effects="out")
    def echoed(self) -> None:
        self.out.set(-self.echo.get())


class Mixer(Reactor):
    def __init__(self, width: int) -> None:
        super().__init__("mixer")
        self.inp = self.input_multiport("in", width, int)
        self.out = self.output("out", int)
        self.acc = 0

    @reaction(triggers="in", effects="out")
    def mix(self) -> None:
        for i, p in enumerate(self.inp):
            if p.is_present:
                self.acc = (self.acc * 7 + (i + 1) * p.get()) % 1_000_000_007
        self.out.set(self.acc)


class Wide(Reactor):
    def __init__(self, width: int = 12) -> None:
        super().__init__("main")
        self.t = self.timer("t", 0, 1000)
        self.stage1 = self.bank("s1", width, lambda i: Noisy(i))
        self.stage2 = self.bank("s2", width, lambda i: Noisy(100 + i))
        self.mixer = self.add(Mixer(width))
        for a, b in zip(self.stage1, self.stage2, strict=True):
            self.connect(a.out, b.inp)
        self.connect([b.out for b in self.stage2], self.mixer.inp)
        self.connect(self.mixer.out, self.stage1[0].fb, after=500)
        self.n = 0

    @reaction(triggers="t", effects="s1.in")
    def feed(self) -> None:
        self.n += 1
        for i, s in enumerate(self.stage1):
            s.inp.set(self.n * i)


def trace_of(workers: int) -> tuple[list[TraceEntry], int]:
    main = Wide()
    result = run(main, workers=workers, timeout=8000, trace=True)
    return result.trace, main.mixer.acc


def test_same_trace_for_any_number_of_workers_across_repeats() -> None:
    reference, acc = trace_of(1)
    assert len(reference) > 200 and acc != 0
    for _ in range(20):
        for workers in (1, 2, 4):
            assert trace_of(workers) == (reference, acc)
