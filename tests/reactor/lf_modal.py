"""LF test programs, translated: modal reactors (test/Python/src/modal_models).

LF runs these with ``fast: false``; the translations run in fast mode, since their checks (TraceTesting's
recorded traces) look at logical time only.
"""

from __future__ import annotations

from lf_lib import TraceTesting, check, lf

from reflow.reactor import Reactor, msec, reaction, sec

M = "test/Python/src/modal_models/"


# --- Count3Modes.lf ---
class CounterCycle(Reactor):
    def __init__(self, name: str = "counter") -> None:
        super().__init__(name)
        self.next = self.input("next")
        self.count = self.output("count")
        self.one = self.mode("One", initial=True)
        self.two = self.mode("Two")
        self.three = self.mode("Three")

    @reaction(triggers="next", effects=("count", "reset(Two)"), mode="One")
    def in_one(self) -> None:
        self.count.set(1)
        self.two.set()

    @reaction(triggers="next", effects=("count", "reset(Three)"), mode="Two")
    def in_two(self) -> None:
        self.count.set(2)
        self.three.set()

    @reaction(triggers="next", effects=("count", "reset(One)"), mode="Three")
    def in_three(self) -> None:
        self.count.set(3)
        self.one.set()


class Count3Modes(Reactor):
    def __init__(self) -> None:
        super().__init__("main")
        self.stepper = self.timer("stepper", 0, msec(250))
        self.counter = self.add(CounterCycle())
        self.expected_value = 1

    @reaction(triggers="stepper", effects="counter.next")
    def trigger(self) -> None:
        self.counter.next.set(True)

    @reaction(triggers="stepper", sources="counter.count")
    def verify(self) -> None:
        check(self.counter.count.is_present, "ERROR: Missing mode change.")
        check(self.counter.count.value == self.expected_value, "ERROR: Wrong mode.")
        self.expected_value = 1 if self.expected_value == 3 else self.expected_value + 1


@lf(M + "Count3Modes.lf", timeout=sec(2))
def count3_modes() -> Reactor:
    return Count3Modes()


# --- BanksCount3ModesSimple.lf ---
class BanksCount3ModesSimple(Reactor):
    def __init__(self) -> None:
        super().__init__("main")
        self.stepper = self.timer("stepper", 0, msec(250))
        self.counters = self.bank("counters", 3, lambda i: CounterCycle())
        test = self.add(TraceTesting(3, [
            0, 1, 1, 1, 1, 1, 1,
            250000000, 1, 2, 1, 2, 1, 2,
            250000000, 1, 3, 1, 3, 1, 3,
            250000000, 1, 1, 1, 1, 1, 1,
            250000000, 1, 2, 1, 2, 1, 2,
            250000000, 1, 3, 1, 3, 1, 3,
            250000000, 1, 1, 1, 1, 1, 1,
            250000000, 1, 2, 1, 2, 1, 2,
            250000000, 1, 3, 1, 3, 1, 3]))
        self.connect([c.count for c in self.counters], test.events)

    @reaction(triggers="stepper", effects="counters.next")
    def trigger(self) -> None:
        for counter in self.counters:
            counter.next.set(True)


@lf(M + "BanksCount3ModesSimple.lf", timeout=sec(2))
def banks_count3_modes_simple() -> Reactor:
    return BanksCount3ModesSimple()


# --- BanksCount3ModesComplex.lf ---
class MetaCounter(Reactor):
    def __init__(self) -> None:
        super().__init__("meta")
        self.next = self.input("next")
        self.always = self.output_multiport("always", 2)
        self.mode1 = self.output_multiport("mode1", 2)
        self.mode2 = self.output_multiport("mode2", 2)
        self.neverp = self.output_multiport("neverp", 2)
        outer = self.bank("outer_counters", 2, lambda i: CounterCycle())
        self.connect(self.next, [c.next for c in outer], repeat=True)
        self.connect([c.count for c in outer], self.always)
        self.one, self.two, self.three = self.mode("One", initial=True), self.mode("Two"), self.mode("Three")
        for mode, bank, out in ((self.one, "mode1_counters", self.mode1),
                                (self.two, "mode2_counters", self.mode2),
                                (self.three, "mode3_counters", self.neverp)):
            with mode:
                counters = self.bank(bank, 2, lambda i: CounterCycle())
                self.connect(self.next, [c.next for c in counters], repeat=True)
                self.connect([c.count for c in counters], out)
        with self.one:
            self.t1 = self.timer("t1", msec(500), msec(250))
        with self.two:
            self.t2 = self.timer("t2", msec(500), msec(250))

    @reaction(triggers="t1", effects="reset(Two)", mode="One")
    def to_two(self) -> None:
        self.two.set()

    @reaction(triggers="t2", effects="history(One)", mode="Two")
    def to_one(self) -> None:
        self.one.set()


COMPLEX_TRACE = [
    0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    250000000, 1, 2, 1, 2, 1, 2, 1, 2, 1, 2, 1, 2, 1, 2, 1, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    250000000, 1, 3, 1, 3, 1, 3, 1, 3, 1, 3, 1, 3, 1, 3, 1, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    250000000, 1, 1, 1, 1, 1, 1, 1, 1, 0, 3, 0, 3, 0, 3, 0, 3, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0,
    250000000, 1, 2, 1, 2, 1, 2, 1, 2, 0, 3, 0, 3, 0, 3, 0, 3, 1, 2, 1, 2, 1, 2, 1, 2, 0, 0, 0, 0, 0, 0, 0, 0,
    250000000, 1, 3, 1, 3, 1, 3, 1, 3, 1, 1, 1, 1, 1, 1, 1, 1, 0, 2, 0, 2, 0, 2, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0,
    250000000, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 0, 1, 0, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0,
    250000000, 1, 2, 1, 2, 1, 2, 1, 2, 0, 1, 0, 1, 0, 1, 0, 1, 1, 2, 1, 2, 1, 2, 1, 2, 0, 0, 0, 0, 0, 0, 0, 0,
    250000000, 1, 3, 1, 3, 1, 3, 1, 3, 1, 2, 1, 2, 1, 2, 1, 2, 0, 2, 0, 2, 0, 2, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0,
    250000000, 1, 1, 1, 1, 1, 1, 1, 1, 0, 2, 0, 2, 0, 2, 0, 2, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0,
    250000000, 1, 2, 1, 2, 1, 2, 1, 2, 0, 2, 0, 2, 0, 2, 0, 2, 1, 2, 1, 2, 1, 2, 1, 2, 0, 0, 0, 0, 0, 0, 0, 0,
    250000000, 1, 3, 1, 3, 1, 3, 1, 3, 1, 3, 1, 3, 1, 3, 1, 3, 0, 2, 0, 2, 0, 2, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0,
    250000000, 1, 1, 1, 1, 1, 1, 1, 1, 0, 3, 0, 3, 0, 3, 0, 3, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0]


class BanksCount3ModesComplex(Reactor):
    def __init__(self) -> None:
        super().__init__("main")
        self.stepper = self.timer("stepper", 0, msec(250))
        self.counters = self.bank("counters", 2, lambda i: MetaCounter())
        test = self.add(TraceTesting(16, COMPLEX_TRACE))
        self.connect([p for c in self.counters for p in c.always]
                     + [p for c in self.counters for p in c.mode1]
                     + [p for c in self.counters for p in c.mode2]
                     + [p for c in self.counters for p in c.neverp], test.events)

    @reaction(triggers="stepper", effects="counters.next")
    def trigger(self) -> None:
        for counter in self.counters:
            counter.next.set(True)


@lf(M + "BanksCount3ModesComplex.lf", timeout=sec(3))
def banks_count3_modes_complex() -> Reactor:
    return BanksCount3ModesComplex()


# --- ModalStateReset.lf, ModalStateResetAuto.lf, BanksModalStateReset.lf ---
class StateModal(Reactor):
    """ModalStateReset's Modal (``auto``: ModalStateResetAuto's, with ``reset state`` instead of a reset
    reaction)."""

    def __init__(self, auto: bool, name: str = "modal") -> None:
        super().__init__(name)
        self.next = self.input("next")
        self.mode_switch = self.output("mode_switch")
        self.count0, self.count1, self.count2 = (self.output(f"count{i}") for i in range(3))
        self.counter0 = 0
        self.auto = auto
        self.one, self.two = self.mode("One", initial=True), self.mode("Two")
        with self.one:
            self.counter1 = 0
            self.t1 = self.timer("T1", 0, msec(250))
        with self.two:
            if auto:
                self.resettable(counter2=-2)
            else:
                self.counter2 = -2
            self.t2 = self.timer("T2", 0, msec(250))

    @reaction(triggers="next", effects="count0")
    def always(self) -> None:
        self.count0.set(self.counter0)
        self.counter0 += 1

    @reaction(triggers="reset", mode="One")
    def reset1(self) -> None:
        if not self.auto:
            self.counter1 = 0

    @reaction(triggers="T1", effects="count1", mode="One")
    def tick1(self) -> None:
        self.count1.set(self.counter1)
        self.counter1 += 1

    @reaction(triggers="next", effects=("reset(Two)", "mode_switch"), mode="One")
    def to_two(self) -> None:
        self.mode_switch.set(1)
        self.two.set()

    @reaction(triggers="reset", mode="Two")
    def reset2(self) -> None:
        if not self.auto:
            self.counter2 = -2

    @reaction(triggers="T2", effects="count2", mode="Two")
    def tick2(self) -> None:
        self.count2.set(self.counter2)
        self.counter2 += 1

    @reaction(triggers="next", effects=("history(One)", "mode_switch"), mode="Two")
    def to_one(self) -> None:
        self.mode_switch.set(1)
        self.one.set()


STATE_RESET_TRACE = [
    0, 0, 0, 0, 0, 1, 0, 0, 0,
    250000000, 0, 0, 0, 0, 1, 1, 0, 0,
    250000000, 0, 0, 0, 0, 1, 2, 0, 0,
    250000000, 0, 0, 0, 0, 1, 3, 0, 0,
    250000000, 1, 1, 1, 0, 1, 4, 0, 0,
    0, 0, 1, 0, 0, 0, 4, 1, -2,
    250000000, 0, 1, 0, 0, 0, 4, 1, -1,
    250000000, 0, 1, 0, 0, 0, 4, 1, 0,
    250000000, 0, 1, 0, 0, 0, 4, 1, 1,
    250000000, 1, 1, 1, 1, 0, 4, 1, 2,
    250000000, 0, 1, 0, 1, 1, 5, 0, 2,
    250000000, 0, 1, 0, 1, 1, 6, 0, 2,
    250000000, 0, 1, 0, 1, 1, 7, 0, 2,
    250000000, 1, 1, 1, 2, 1, 8, 0, 2,
    0, 0, 1, 0, 2, 0, 8, 1, -2,
    250000000, 0, 1, 0, 2, 0, 8, 1, -1,
    250000000, 0, 1, 0, 2, 0, 8, 1, 0,
    250000000, 0, 1, 0, 2, 0, 8, 1, 1,
    250000000, 1, 1, 1, 3, 0, 8, 1, 2]


class ModalStateReset(Reactor):
    def __init__(self, auto: bool) -> None:
        super().__init__("main")
        self.stepper = self.timer("stepper", sec(1), sec(1))
        self.modal = self.add(StateModal(auto))
        test = self.add(TraceTesting(4, STATE_RESET_TRACE))
        m = self.modal
        self.connect([m.mode_switch, m.count0, m.count1, m.count2], test.events)

    @reaction(triggers="stepper", effects="modal.next")
    def trigger(self) -> None:
        self.modal.next.set(True)


@lf(M + "ModalStateReset.lf", timeout=sec(4))
def modal_state_reset() -> Reactor:
    return ModalStateReset(auto=False)


@lf(M + "ModalStateResetAuto.lf", timeout=sec(4))
def modal_state_reset_auto() -> Reactor:
    return ModalStateReset(auto=True)


def _interleave_rows(rows: list[list[int]], width: int) -> list[int]:
    """BanksModalStateReset's trace from ModalStateReset's: each of the 4 channels twice (two instances)."""
    out: list[int] = []
    for row in rows:
        delay, pairs = row[0], [row[1 + 2 * i: 3 + 2 * i] for i in range(width)]
        out.append(delay)
        for _ in range(2):  # reset1 bank, then reset2 bank
            for pair in pairs:
                out.extend(pair * 2)
    return out


class BanksModalStateReset(Reactor):
    def __init__(self) -> None:
        super().__init__("main")
        self.stepper = self.timer("stepper", sec(1), sec(1))
        self.reset1 = self.bank("reset1", 2, lambda i: StateModal(False))
        self.reset2 = self.bank("reset2", 2, lambda i: StateModal(True))
        rows = [STATE_RESET_TRACE[i:i + 9] for i in range(0, len(STATE_RESET_TRACE), 9)]
        test = self.add(TraceTesting(16, _interleave_rows(rows, 4)))
        ports = []
        for bank in (self.reset1, self.reset2):
            for name in ("mode_switch", "count0", "count1", "count2"):
                ports.extend(getattr(m, name) for m in bank)
        self.connect(ports, test.events)

    @reaction(triggers="stepper", effects="reset1.next")
    def trigger1(self) -> None:
        for m in self.reset1:
            m.next.set(True)

    @reaction(triggers="stepper", effects="reset2.next")
    def trigger2(self) -> None:
        for m in self.reset2:
            m.next.set(True)


@lf(M + "BanksModalStateReset.lf", timeout=sec(4))
def banks_modal_state_reset() -> Reactor:
    return BanksModalStateReset()


# --- ModalStartupShutdown.lf ---
class StartupModal(Reactor):
    def __init__(self) -> None:
        super().__init__("modal")
        self.next = self.input("next")
        names = ("mode_switch", "startup1", "startup2", "shutdown2", "shutdown3", "startup4", "reset4",
                 "shutdown4", "startup5", "reset5", "shutdown5")
        self.outs = [self.output(n) for n in names]
        self.modes = [self.mode("One", initial=True),
                      *(self.mode(n) for n in ("Two", "Three", "Four", "Five"))]

    def _go(self, to: int) -> None:
        self.outs[0].set(to)
        self.modes[to - 1].set()

    @reaction(triggers="startup", effects="startup1", mode="One")
    def startup1(self) -> None:
        self.outs[1].set(1)

    @reaction(triggers="next", effects=("reset(Two)", "mode_switch"), mode="One")
    def next1(self) -> None:
        self._go(2)

    @reaction(triggers="startup", effects="startup2", mode="Two")
    def startup2(self) -> None:
        self.outs[2].set(1)

    @reaction(triggers="next", effects=("reset(Three)", "mode_switch"), mode="Two")
    def next2(self) -> None:
        self._go(3)

    @reaction(triggers="shutdown", effects="shutdown2", mode="Two")
    def shutdown2(self) -> None:
        self.outs[3].set(1)

    @reaction(triggers="next", effects=("reset(Four)", "mode_switch"), mode="Three")
    def next3(self) -> None:
        self._go(4)

    @reaction(triggers="shutdown", effects="shutdown3", mode="Three")
    def shutdown3(self) -> None:
        self.outs[4].set(1)

    @reaction(triggers="startup", effects="startup4", mode="Four")
    def startup4(self) -> None:
        self.outs[5].set(1)

    @reaction(triggers="reset", effects="reset4", mode="Four")
    def reset4(self) -> None:
        self.outs[6].set(1)

    @reaction(triggers="next", effects=("reset(Four)", "mode_switch"), mode="Four")
    def next4(self) -> None:
        self._go(4)

    @reaction(triggers="shutdown", effects="shutdown4", mode="Four")
    def shutdown4(self) -> None:
        self.outs[7].set(1)

    @reaction(triggers="startup", effects="startup5", mode="Five")
    def startup5(self) -> None:  # unreachable
        self.outs[8].set(1)

    @reaction(triggers="reset", effects="reset5", mode="Five")
    def reset5(self) -> None:
        self.outs[9].set(1)

    @reaction(triggers="shutdown", effects="shutdown5", mode="Five")
    def shutdown5(self) -> None:
        self.outs[10].set(1)


class ModalStartupShutdown(Reactor):
    def __init__(self) -> None:
        super().__init__("main")
        self.stepper = self.timer("stepper", msec(500), msec(500))
        self.modal = self.add(StartupModal())
        test = self.add(TraceTesting(11, [
            0, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
            500000000, 1, 2, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
            0, 0, 2, 0, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
            500000000, 1, 3, 0, 1, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
            500000000, 1, 4, 0, 1, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
            0, 0, 4, 0, 1, 0, 1, 0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0,
            500000000, 1, 4, 0, 1, 0, 1, 0, 0, 0, 0, 0, 1, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0,
            0, 0, 4, 0, 1, 0, 1, 0, 0, 0, 0, 0, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0,
            500000000, 1, 4, 0, 1, 0, 1, 0, 0, 0, 0, 0, 1, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0,
            0, 0, 4, 0, 1, 0, 1, 0, 0, 0, 0, 0, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0,
            500000000, 1, 4, 0, 1, 0, 1, 1, 1, 1, 1, 0, 1, 0, 1, 1, 1, 0, 0, 0, 0, 0, 0]))
        self.connect(self.modal.outs, test.events)

    @reaction(triggers="stepper", effects="modal.next")
    def trigger(self) -> None:
        self.modal.next.set(True)


@lf(M + "ModalStartupShutdown.lf", timeout=msec(3000))
def modal_startup_shutdown() -> Reactor:
    return ModalStartupShutdown()


# --- ModalTimers.lf, ModalActions.lf ---
class TimerModal(Reactor):
    """ModalTimers' Modal: a timer in each mode."""

    def __init__(self) -> None:
        super().__init__("modal")
        self.next = self.input("next")
        self.mode_switch = self.output("mode_switch")
        self.outs = [self.output("timer1"), self.output("timer2")]
        self.one, self.two = self.mode("One", initial=True), self.mode("Two")
        with self.one:
            self.t1 = self.timer("T1", 0, msec(750))
        with self.two:
            self.t2 = self.timer("T2", 0, msec(750))

    @reaction(triggers="T1", effects="timer1", mode="One")
    def tick1(self) -> None:
        self.outs[0].set(1)

    @reaction(triggers="next", effects=("reset(Two)", "mode_switch"), mode="One")
    def to_two(self) -> None:
        self.mode_switch.set(1)
        self.two.set()

    @reaction(triggers="T2", effects="timer2", mode="Two")
    def tick2(self) -> None:
        self.outs[1].set(1)

    @reaction(triggers="next", effects=("history(One)", "mode_switch"), mode="Two")
    def to_one(self) -> None:
        self.mode_switch.set(1)
        self.one.set()


class ActionModal(Reactor):
    """ModalActions' Modal: each mode's timer schedules a 500 ms action of the mode."""

    def __init__(self) -> None:
        super().__init__("modal")
        self.next = self.input("next")
        self.mode_switch = self.output("mode_switch")
        self.outs = [self.output(f"action{i}_{what}") for i in (1, 2) for what in ("sched", "exec")]
        self.one, self.two = self.mode("One", initial=True), self.mode("Two")
        with self.one:
            self.t1 = self.timer("T1", 0, msec(750))
            self.delay1 = self.logical_action("delay1", msec(500))
        with self.two:
            self.t2 = self.timer("T2", 0, msec(750))
            self.delay2 = self.logical_action("delay2", msec(500))

    @reaction(triggers="T1", effects=("delay1", "action1_sched"), mode="One")
    def tick1(self) -> None:
        self.delay1.schedule(delay=0)
        self.outs[0].set(1)

    @reaction(triggers="delay1", effects="action1_exec", mode="One")
    def exec1(self) -> None:
        self.outs[1].set(1)

    @reaction(triggers="next", effects=("reset(Two)", "mode_switch"), mode="One")
    def to_two(self) -> None:
        self.mode_switch.set(1)
        self.two.set()

    @reaction(triggers="T2", effects=("delay2", "action2_sched"), mode="Two")
    def tick2(self) -> None:
        self.delay2.schedule(delay=0)
        self.outs[2].set(1)

    @reaction(triggers="delay2", effects="action2_exec", mode="Two")
    def exec2(self) -> None:
        self.outs[3].set(1)

    @reaction(triggers="next", effects=("history(One)", "mode_switch"), mode="Two")
    def to_one(self) -> None:
        self.mode_switch.set(1)
        self.one.set()


class ModalTimers(Reactor):
    def __init__(self, actions: bool, trace: list[int]) -> None:
        super().__init__("main")
        self.stepper = self.timer("stepper", sec(1), sec(1))
        self.modal = self.add(ActionModal() if actions else TimerModal())
        test = self.add(TraceTesting(len(self.modal.outs) + 1, trace))
        self.connect([self.modal.mode_switch, *self.modal.outs], test.events)

    @reaction(triggers="stepper", effects="modal.next")
    def trigger(self) -> None:
        self.modal.next.set(True)


@lf(M + "ModalTimers.lf", timeout=sec(4))
def modal_timers() -> Reactor:
    return ModalTimers(False, [
        0, 0, 0, 1, 1, 0, 0,
        750000000, 0, 0, 1, 1, 0, 0,
        250000000, 1, 1, 0, 1, 0, 0,
        0, 0, 1, 0, 1, 1, 1,
        750000000, 0, 1, 0, 1, 1, 1,
        250000000, 1, 1, 0, 1, 0, 1,
        500000000, 0, 1, 1, 1, 0, 1,
        500000000, 1, 1, 0, 1, 0, 1,
        0, 0, 1, 0, 1, 1, 1,
        750000000, 0, 1, 0, 1, 1, 1,
        250000000, 1, 1, 0, 1, 0, 1])


ACTIONS_TRACE = [
    0, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0,
    500000000, 0, 0, 0, 1, 1, 1, 0, 0, 0, 0,
    250000000, 0, 0, 1, 1, 0, 1, 0, 0, 0, 0,
    250000000, 1, 1, 0, 1, 0, 1, 0, 0, 0, 0,
    0, 0, 1, 0, 1, 0, 1, 1, 1, 0, 0,
    500000000, 0, 1, 0, 1, 0, 1, 0, 1, 1, 1,
    250000000, 0, 1, 0, 1, 0, 1, 1, 1, 0, 1,
    250000000, 1, 1, 0, 1, 0, 1, 0, 1, 0, 1,
    250000000, 0, 1, 0, 1, 1, 1, 0, 1, 0, 1,
    250000000, 0, 1, 1, 1, 0, 1, 0, 1, 0, 1,
    500000000, 1, 1, 0, 1, 1, 1, 0, 1, 0, 1,
    0, 0, 1, 0, 1, 0, 1, 1, 1, 0, 1,
    500000000, 0, 1, 0, 1, 0, 1, 0, 1, 1, 1,
    250000000, 0, 1, 0, 1, 0, 1, 1, 1, 0, 1,
    250000000, 1, 1, 0, 1, 0, 1, 0, 1, 0, 1]


@lf(M + "ModalActions.lf", timeout=sec(4))
def modal_actions() -> Reactor:
    return ModalTimers(True, ACTIONS_TRACE)


# --- ModalAfter.lf ---
class Producer(Reactor):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.product = self.output("product")
        self.t = self.timer("t", 0, msec(750))

    @reaction(triggers="t", effects="product")
    def produce(self) -> None:
        self.product.set(1)


class Consumer(Reactor):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.product = self.input("product")
        self.report = self.output("report")

    @reaction(triggers="product", effects="report")
    def consume(self) -> None:
        self.report.set(1)


class AfterModal(Reactor):
    def __init__(self) -> None:
        super().__init__("modal")
        self.next = self.input("next")
        self.mode_switch = self.output("mode_switch")
        self.outs = [self.output(n) for n in ("produced1", "consumed1", "produced2", "consumed2")]
        self.one, self.two = self.mode("One", initial=True), self.mode("Two")
        for i, mode in enumerate((self.one, self.two)):
            with mode:
                producer = self.add(Producer(f"producer{i + 1}"))
                consumer = self.add(Consumer(f"consumer{i + 1}"))
                self.connect(producer.product, self.outs[2 * i])
                self.connect(producer.product, consumer.product, after=msec(500))
                self.connect(consumer.report, self.outs[2 * i + 1])

    @reaction(triggers="next", effects=("reset(Two)", "mode_switch"), mode="One")
    def to_two(self) -> None:
        self.mode_switch.set(1)
        self.two.set()

    @reaction(triggers="next", effects=("history(One)", "mode_switch"), mode="Two")
    def to_one(self) -> None:
        self.mode_switch.set(1)
        self.one.set()


class ModalAfter(Reactor):
    def __init__(self) -> None:
        super().__init__("main")
        self.stepper = self.timer("stepper", sec(1), sec(1))
        self.modal = self.add(AfterModal())
        test = self.add(TraceTesting(5, ACTIONS_TRACE))
        self.connect([self.modal.mode_switch, *self.modal.outs], test.events)

    @reaction(triggers="stepper", effects="modal.next")
    def trigger(self) -> None:
        self.modal.next.set(True)


@lf(M + "ModalAfter.lf", timeout=sec(4))
def modal_after() -> Reactor:
    return ModalAfter()


# --- ModalCycleBreaker.lf ---
class CycleModal(Reactor):
    """Mode Two's reaction to in2 comes first: without modes, a causality cycle."""

    def __init__(self) -> None:
        super().__init__("modal")
        self.in1, self.in2 = self.input("in1"), self.input("in2")
        self.out = self.output("out")
        self.two, self.one = self.mode("Two"), self.mode("One", initial=True)
        with self.two:
            self.wait = self.timer("wait", msec(150), sec(1))

    @reaction(triggers="in2", mode="Two")
    def take(self) -> None:
        pass

    @reaction(triggers="wait", effects="reset(One)", mode="Two")
    def back(self) -> None:
        self.one.set()

    @reaction(triggers="in1", effects="out", mode="One")
    def forward(self) -> None:
        self.out.set(self.in1.value)

    @reaction(triggers="in1", effects="reset(Two)", mode="One")
    def maybe(self) -> None:
        if self.in1.value % 5 == 4:
            self.two.set()


class Counter(Reactor):
    def __init__(self, name: str, period: int = sec(1), resettable: bool = False) -> None:
        super().__init__(name)
        self.value = self.output("value")
        self.t = self.timer("t", 0, period)
        if resettable:
            self.resettable(curval=0)
        else:
            self.curval = 0

    @reaction(triggers="t", effects="value")
    def tick(self) -> None:
        self.value.set(self.curval)
        self.curval += 1


class ModalCycleBreaker(Reactor):
    def __init__(self) -> None:
        super().__init__("main")
        counter = self.add(Counter("counter", msec(100)))
        self.modal = self.add(CycleModal())
        test = self.add(TraceTesting(1, [
            0, 1, 0, 100000000, 1, 1, 100000000, 1, 2, 100000000, 1, 3, 100000000, 1, 4,
            200000000, 1, 6, 100000000, 1, 7, 100000000, 1, 8, 100000000, 1, 9]))
        self.connect(counter.value, self.modal.in1)
        self.connect(self.modal.out, self.modal.in2)
        self.connect(self.modal.out, test.events[0])

    @reaction(triggers="modal.out")
    def show(self) -> None:
        pass


@lf(M + "ModalCycleBreaker.lf", timeout=sec(1))
def modal_cycle_breaker() -> Reactor:
    return ModalCycleBreaker()


# --- ModalNestedReactions.lf ---
class Forward(Reactor):
    def __init__(self) -> None:
        super().__init__("fwd")
        self.inp, self.out = self.input("inp"), self.output("out")

    @reaction(triggers="inp", effects="out")
    def forward(self) -> None:
        self.out.set(self.inp.value)


class NestedCounterCycle(Reactor):
    def __init__(self) -> None:
        super().__init__("counter")
        self.next = self.input("next")
        names = ("count", "only_in_two", "neverp")
        self.count, self.only_in_two, self.neverp = (self.output(n) for n in names)
        self.one, self.two, self.three = self.mode("One", initial=True), self.mode("Two"), self.mode("Three")
        with self.two:
            fwd = self.add(Forward())
            self.connect(self.next, fwd.inp)
            self.connect(fwd.out, self.only_in_two)

    @reaction(triggers="next", effects=("count", "reset(Two)"), mode="One")
    def in_one(self) -> None:
        self.count.set(1)
        self.two.set()

    @reaction(triggers="next", effects=("count", "reset(One)"), mode="Two")
    def in_two(self) -> None:
        self.count.set(2)
        self.one.set()

    @reaction(triggers="next", effects="neverp", mode="Three")
    def in_three(self) -> None:
        self.neverp.set(True)


class ModalNestedReactions(Reactor):
    def __init__(self) -> None:
        super().__init__("main")
        self.stepper = self.timer("stepper", 0, msec(250))
        self.counter = self.add(NestedCounterCycle())

    @reaction(triggers="stepper", effects="counter.next")
    def trigger(self) -> None:
        self.counter.next.set(True)

    @reaction(triggers="stepper", sources=("counter.count", "counter.only_in_two"))
    def verify(self) -> None:
        count, two = self.counter.count, self.counter.only_in_two
        check(count.is_present, "ERROR: Missing mode change.")
        check(not (two.is_present and count.value != 2),
              "ERROR: Indirectly nested reaction was not properly deactivated.")
        check(two.is_present or count.value != 2, "ERROR: Missing output from indirectly nested reaction.")

    @reaction(triggers="counter.neverp")
    def never(self) -> None:
        check(False, "ERROR: Detected output from unreachable mode.")


@lf(M + "ModalNestedReactions.lf", timeout=sec(2))
def modal_nested_reactions() -> Reactor:
    return ModalNestedReactions()


# --- MultipleOutputFeeder_2Connections.lf, MultipleOutputFeeder_ReactionConnections.lf ---
class FeederModal(Reactor):
    """MultipleOutputFeeder_2Connections' Modal: a connection to `count` in each mode."""

    def __init__(self, by_reaction: bool = False) -> None:
        super().__init__("modal")
        self.next, self.count = self.input("next"), self.output("count")
        self.one, self.two = self.mode("One", initial=True), self.mode("Two")
        with self.one:
            counter1 = self.add(Counter("counter1", msec(250), resettable=True))
            self.connect(counter1.value, self.count)
        with self.two:
            self.counter2 = self.add(Counter("counter2", msec(100), resettable=True))
            if not by_reaction:
                self.connect(self.counter2.value, self.count)

    @reaction(triggers="next", effects="reset(Two)", mode="One")
    def to_two(self) -> None:
        self.two.set()

    @reaction(triggers="next", effects="history(One)", mode="Two")
    def to_one(self) -> None:
        self.one.set()


class ReactionFeederModal(FeederModal):
    """MultipleOutputFeeder_ReactionConnections' Modal: in mode Two a reaction writes `count` instead."""

    def __init__(self) -> None:
        super().__init__(by_reaction=True)

    @reaction(triggers="counter2.value", effects="count", mode="Two")
    def scaled(self) -> None:
        self.count.set(self.counter2.value.value * 10)

    @reaction(triggers="next", effects="history(One)", mode="Two")
    def to_one(self) -> None:
        self.one.set()


def _feeder_trace(scale: int) -> list[int]:
    rows = [(0, 0), (250, 1), (250, 2), (0, 0), (100, 1), (100, 2), (100, 3), (100, 4), (100, 5), (250, 3),
            (250, 4), (0, 0), (100, 1), (100, 2), (100, 3), (100, 4), (100, 5)]
    out: list[int] = []
    in_two = [False, False, False, True, True, True, True, True, True, False, False, True, True, True, True,
              True, True]
    for (delay, value), two in zip(rows, in_two, strict=True):
        out += [msec(delay), 1, value * (scale if two else 1)]
    return out


class MultipleOutputFeeder(Reactor):
    def __init__(self, by_reaction: bool) -> None:
        super().__init__("main")
        self.stepper = self.timer("stepper", msec(500), msec(500))
        self.modal = self.add(ReactionFeederModal() if by_reaction else FeederModal())
        test = self.add(TraceTesting(1, _feeder_trace(10 if by_reaction else 1)))
        self.connect(self.modal.count, test.events[0])

    @reaction(triggers="stepper", effects="modal.next")
    def trigger(self) -> None:
        self.modal.next.set(True)

    @reaction(triggers="modal.count")
    def show(self) -> None:
        pass


@lf(M + "MultipleOutputFeeder_2Connections.lf", timeout=sec(2))
def multiple_output_feeder_2_connections() -> Reactor:
    return MultipleOutputFeeder(by_reaction=False)


@lf(M + "MultipleOutputFeeder_ReactionConnections.lf", timeout=sec(2))
def multiple_output_feeder_reaction_connections() -> Reactor:
    return MultipleOutputFeeder(by_reaction=True)


# --- ModalMultiport.lf, ModalMultiportBank.lf ---
class MultiportDestination(Reactor):
    def __init__(self, n_inputs: int = 2) -> None:
        super().__init__("dst")
        self.req, self.rsp = self.input_multiport("req", n_inputs), self.output_multiport("rsp", n_inputs)

    @reaction(triggers="req", effects="rsp")
    def answer(self) -> None:
        for req, rsp in zip(self.req, self.rsp, strict=True):
            if req.is_present:
                rsp.set(req.value)


class MultiportSource(Reactor):
    def __init__(self, n_ports: int) -> None:
        super().__init__("src")
        self.req, self.rsp = self.output_multiport("req", n_ports), self.input_multiport("rsp", n_ports)
        self.t = self.timer("t", 0, msec(1))
        self.responses = 0

    @reaction(triggers="t", effects="req")
    def ask(self) -> None:
        for n, req in enumerate(self.req):
            req.set(n)

    @reaction(triggers="rsp")
    def receive(self) -> None:
        self.responses += 1
        for n, rsp in enumerate(self.rsp):
            check(rsp.value == n, f"ERROR: Expected {n}, got {rsp.value}")

    @reaction(triggers="shutdown")
    def done(self) -> None:  # not in LF's file: the responses must have come (through the mode switched to)
        check(self.responses == 2, f"{self.responses} responses")


class Selector(Reactor):
    def __init__(self, n_ports: int, n_dest: int) -> None:
        super().__init__("sel")
        self.in_req, self.out_rsp = self.input_multiport("in_req", n_ports), self.output_multiport("out_rsp",
                                                                                                  n_ports)
        self.dst1, self.dst2 = self.mode("DST_1", initial=True), self.mode("DST_2")
        for i, mode in enumerate((self.dst1, self.dst2)):
            with mode:
                dst = self.bank(f"dst{i + 1}", n_dest, lambda i: MultiportDestination())
                self.connect(self.in_req, [p for d in dst for p in d.req])
                self.connect([p for d in dst for p in d.rsp], self.out_rsp)

    @reaction(triggers="startup", effects="reset(DST_2)", mode="DST_1")
    def switch(self) -> None:
        self.dst2.set()


class ModalMultiport(Reactor):
    def __init__(self, n_ports: int, n_dest: int) -> None:
        super().__init__("main")
        src, sel = self.add(MultiportSource(n_ports)), self.add(Selector(n_ports, n_dest))
        self.connect(src.req, sel.in_req)
        self.connect(sel.out_rsp, src.rsp)


@lf(M + "ModalMultiport.lf", timeout=msec(1))
def modal_multiport() -> Reactor:
    return ModalMultiport(2, 1)


@lf(M + "ModalMultiportBank.lf", timeout=msec(1))
def modal_multiport_bank() -> Reactor:
    return ModalMultiport(4, 2)


# --- ConvertCaseTest.lf ---
class Converter(Reactor):
    def __init__(self) -> None:
        super().__init__("converter")
        self.raw, self.converted = self.input("raw"), self.output("converted")
        self.upper, self.lower = self.mode("Upper", initial=True), self.mode("Lower")

    @reaction(triggers="raw", effects=("converted", "reset(Lower)"), mode="Upper")
    def up(self) -> None:
        character = self.raw.value.upper()
        self.converted.set(character)
        if character == " ":
            self.lower.set()

    @reaction(triggers="raw", effects=("converted", "reset(Upper)"), mode="Lower")
    def down(self) -> None:
        character = self.raw.value.lower()
        self.converted.set(character)
        if character == " ":
            self.upper.set()


class Processor(Reactor):
    """ConvertCaseTest's processors without their way back to Converting (the subclasses add it)."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.discard, self.character, self.converted = self.input("discard"), self.input("character"), \
            self.output("converted")
        self.converting, self.discarding = self.mode("Converting", initial=True), self.mode("Discarding")
        with self.converting:
            converter = self.add(Converter())
            self.connect(self.character, converter.raw)
            self.connect(converter.converted, self.converted)

    @reaction(triggers="discard", effects="reset(Discarding)", mode="Converting")
    def discard_(self) -> None:
        self.discarding.set()

    @reaction(triggers="character", effects="converted", mode="Discarding")
    def blank(self) -> None:
        self.converted.set("_")



class HistoryProcessor(Processor):
    """ConvertCaseTest's HistoryProcessor: the same, but back to Converting by history."""

    @reaction(triggers="character", effects="history(Converting)", mode="Discarding")
    def resume(self) -> None:
        self.converting.set()


class ResetProcessor(Processor):
    @reaction(triggers="character", effects="reset(Converting)", mode="Discarding")
    def resume(self) -> None:
        self.converting.set()


class InputFeeder(Reactor):
    def __init__(self, message: str) -> None:
        super().__init__("feeder")
        self.character = self.output("character")
        self.t = self.timer("t", 0, msec(250))
        self.message, self.idx = message, 0

    @reaction(triggers="t", effects="character")
    def feed(self) -> None:
        if self.idx < len(self.message):
            self.character.set(self.message[self.idx])
            self.idx += 1


class ConvertCaseTest(Reactor):
    def __init__(self) -> None:
        super().__init__("main")
        self.stepper = self.timer("stepper", msec(500), sec(1))
        feeder = self.add(InputFeeder("Hello World!"))
        self.reset_processor = self.add(ResetProcessor("reset_processor"))
        self.history_processor = self.add(HistoryProcessor("history_processor"))
        self.connect(feeder.character, self.reset_processor.character)
        self.connect(feeder.character, self.history_processor.character)
        expected = [("H", "H"), ("E", "E"), ("L", "L"), ("_", "_"), ("O", "O"), (" ", " "), ("w", "w"),
                    ("_", "_"), ("R", "r"), ("L", "l"), ("D", "d"), ("_", "_")]
        trace: list[object] = []
        for i, (a, b) in enumerate(expected):
            trace += [0 if i == 0 else msec(250), True, a, True, b]
        test = self.add(TraceTesting(2, trace))  # type: ignore[arg-type]
        self.connect([self.reset_processor.converted, self.history_processor.converted], test.events)

    @reaction(triggers="stepper", effects=("reset_processor.discard", "history_processor.discard"))
    def discard(self) -> None:
        self.reset_processor.discard.set(True)
        self.history_processor.discard.set(True)


@lf(M + "ConvertCaseTest.lf", timeout=sec(4))
def convert_case_test() -> Reactor:
    return ConvertCaseTest()
