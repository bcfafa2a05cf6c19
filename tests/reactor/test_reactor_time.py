"""Timers, startup/shutdown, timeouts, stop requests, logical actions, after delays (Lingua Franca
semantics)."""

from __future__ import annotations

import pytest
from reactor_programs import Add, Log, Recorder, Source

from reflow.reactor import Reactor, Tag, msec, reaction, run
from reflow.runtime.tag import format_ns, minutes, nsec, sec, usec


def test_units_and_tag_order() -> None:
    assert (nsec(5), usec(2), msec(3), sec(1.5), minutes(1)) == (5, 2_000, 3_000_000, 1_500_000_000,
                                                                 60_000_000_000)
    tags = [Tag(2, 0), Tag(1, 5), Tag(1, 0), Tag(0, 9)]
    assert sorted(tags) == [Tag(0, 9), Tag(1, 0), Tag(1, 5), Tag(2, 0)]
    assert Tag(5, 3).delay(0) == Tag(5, 4) and Tag(5, 3).delay(7) == Tag(12, 0)
    with pytest.raises(ValueError):
        Tag(0).delay(-1)
    assert format_ns(msec(1.5)) == "1.5 ms" and str(Tag(0, 1)) == "(0 ns, 1)"


class Timed(Reactor):
    def __init__(self, log: Log) -> None:
        super().__init__("main")
        self.log = log
        self.a = self.timer("a", offset=msec(5), period=msec(10))
        self.once = self.timer("once", offset=msec(12))

    @reaction(triggers="startup")
    def hello(self) -> None:
        self.log.add(self, "startup")

    @reaction(triggers=("a", "once"))
    def tick(self) -> None:
        self.log.add(self, ("a" if self.a.is_present else "") + ("once" if self.once.is_present else ""))

    @reaction(triggers="shutdown")
    def bye(self) -> None:
        self.log.add(self, "shutdown")


def test_timers_startup_and_shutdown_at_timeout() -> None:
    log = Log()
    result = run(Timed(log), timeout=msec(25))
    assert [(t, w) for t, _, w in log.items] == [
        ((0, 0), "startup"), ((msec(5), 0), "a"), ((msec(12), 0), "once"), ((msec(15), 0), "a"),
        ((msec(25), 0), "a"), ((msec(25), 0), "shutdown")]
    assert result.final_tag == Tag(msec(25), 0)


class StopAt(Reactor):
    def __init__(self, log: Log, at: int) -> None:
        super().__init__("main")
        self.log, self.at = log, at
        self.t = self.timer("t", 0, 1)

    @reaction(triggers="t")
    def tick(self) -> None:
        self.log.add(self, "tick")
        if self.logical_time == self.at:
            self.request_stop()

    @reaction(triggers="shutdown")
    def bye(self) -> None:
        self.log.add(self, "shutdown")


def test_request_stop_shuts_down_next_microstep() -> None:
    log = Log()
    result = run(StopAt(log, 3))
    assert log.items[-2:] == [((3, 0), "main", "tick"), ((3, 1), "main", "shutdown")]
    assert result.final_tag == Tag(3, 1) and len(log.items) == 5


def test_program_ends_when_event_queue_is_empty() -> None:
    log = Log()

    class Once(Reactor):
        def __init__(self) -> None:
            super().__init__("main")
            self.src = self.add(Source(period=0, offset=7))
            self.rec = self.add(Recorder(log))
            self.connect(self.src.out, self.rec.inp)

    result = run(Once())
    assert [(t, w) for t, _, w in log.items] == [((7, 0), 1), ((7, 1), "shutdown")]
    assert result.final_tag == Tag(7, 1)


class Actions(Reactor):
    def __init__(self, log: Log) -> None:
        super().__init__("main")
        self.log = log
        self.now = self.logical_action("now")
        self.later = self.logical_action("later", min_delay=msec(2))

    @reaction(triggers="startup", effects=("now", "later"))
    def start(self) -> None:
        self.now.schedule("zero")
        self.later.schedule("first", delay=msec(1))
        self.later.schedule("second", delay=msec(1))  # same tag: delivered one microstep later

    @reaction(triggers=("now", "later"))
    def fired(self) -> None:
        self.log.add(self, (self.now.value, self.later.value))


def test_logical_actions_min_delay_and_two_events_at_one_tag_at_successive_microsteps() -> None:
    """LF (reactor-c, no min spacing): events of one action at one tag pile up in superdense time."""
    log = Log()
    run(Actions(log))
    assert [(t, w) for t, _, w in log.items] == [((0, 1), ("zero", None)), ((msec(3), 0), (None, "first")),
                                                 ((msec(3), 1), (None, "second"))]


class Again(Reactor):
    """Triggered by the action it schedules: no causality cycle, since the event lands on a later tag."""

    def __init__(self, log: Log) -> None:
        super().__init__("main")
        self.log = log
        self.a = self.logical_action("a")
        self.n = 0

    @reaction(triggers=("startup", "a"), effects="a")
    def again(self) -> None:
        self.log.add(self, self.n)
        self.n += 1
        if self.n < 3:
            self.a.schedule()


def test_a_reaction_may_schedule_the_action_that_triggers_it() -> None:
    log = Log()
    run(Again(log))
    assert [t for t, _, _ in log.items] == [(0, 0), (0, 1), (0, 2)]


class Delay(Reactor):
    """LF's delay pattern: the reaction to the action is declared before the one that schedules it."""

    def __init__(self, log: Log) -> None:
        super().__init__("main")
        self.log = log
        self.a = self.logical_action("a")

    @reaction(triggers="a")
    def emit(self) -> None:
        self.log.add(self, self.a.value)

    @reaction(triggers="startup", effects="a")
    def take(self) -> None:
        self.a.schedule(7, delay=msec(100))


def test_the_delay_pattern_is_not_a_causality_cycle() -> None:
    log = Log()
    run(Delay(log))
    assert log.items == [((msec(100), 0), "main", 7)]


def test_values_sent_at_successive_microsteps_over_after_arrive_at_successive_microsteps() -> None:
    log = Log()

    class Burst(Reactor):
        def __init__(self) -> None:
            super().__init__("burst")
            self.a = self.logical_action("a")
            self.out = self.output("out", int)
            self.n = 0

        @reaction(triggers=("startup", "a"), effects=("out", "a"))
        def send(self) -> None:
            self.out.set(self.n)
            self.n += 1
            if self.n < 3:
                self.a.schedule()

    class Main(Reactor):
        def __init__(self) -> None:
            super().__init__("main")
            burst, rec = self.add(Burst()), self.add(Recorder(log))
            self.connect(burst.out, rec.inp, after=msec(5))

    run(Main())
    assert [(t, w) for t, _, w in log.items if w != "shutdown"] == [
        ((msec(5), 0), 0), ((msec(5), 1), 1), ((msec(5), 2), 2)]


def test_after_delay_and_zero_after_is_a_microstep() -> None:
    log = Log()

    class Delayed(Reactor):
        def __init__(self) -> None:
            super().__init__("main")
            src = self.add(Source(period=0))
            now, late, micro = (self.add(Recorder(log, n)) for n in ("now", "late", "micro"))
            self.connect(src.out, now.inp)
            self.connect(src.out, late.inp, after=msec(4))
            self.connect(src.out, micro.inp, after=0)

    run(Delayed())
    got = {(who, t) for t, who, w in log.items if w != "shutdown"}
    assert got == {("main.now", (0, 0)), ("main.micro", (0, 1)), ("main.late", (msec(4), 0))}


def test_values_flow_through_a_chain_at_one_tag() -> None:
    log = Log()

    class Chain(Reactor):
        def __init__(self) -> None:
            super().__init__("main")
            src = self.add(Source(period=0))
            a, b = self.add(Add("a", 10)), self.add(Add("b", 100))
            rec = self.add(Recorder(log))
            self.connect(src.out, a.inp)
            self.connect(a.out, b.inp)
            self.connect(b.out, rec.inp)

    run(Chain())
    assert log.items[0] == ((0, 0), "main.recorder", 111)


class Ordered(Reactor):
    """Three reactions on one trigger: they must run in declaration order, seeing each other's writes."""

    def __init__(self, log: Log) -> None:
        super().__init__("main")
        self.log = log
        self.out = self.output("out")

    @reaction(triggers="startup", effects="out")
    def first(self) -> None:
        self.out.set(["first"])

    @reaction(triggers="startup", effects="out")
    def second(self) -> None:
        self.out.set([*self.out.get(), "second"])

    @reaction(triggers="startup", sources=(), effects="out")
    def third(self) -> None:
        self.log.add(self, [*self.out.get(), "third"])


def test_reactions_of_one_reactor_run_in_declaration_order() -> None:
    for workers in (1, 3):
        log = Log()
        run(Ordered(log), workers=workers)
        assert log.items == [((0, 0), "main", ["first", "second", "third"])]


def test_sources_are_read_but_do_not_trigger() -> None:
    log = Log()

    class Sampler(Reactor):
        def __init__(self) -> None:
            super().__init__("sampler")
            self.t = self.timer("t", 0, 20)
            self.inp = self.input("in", int)

        @reaction(triggers="t", sources="in")
        def sample(self) -> None:
            log.add(self, (self.inp.is_present, self.inp.value))

    class Main(Reactor):
        def __init__(self) -> None:
            super().__init__("main")
            src = self.add(Source(period=10, offset=10))
            sampler = self.add(Sampler())
            self.connect(src.out, sampler.inp)

    run(Main(), timeout=40)
    assert [(t, w) for t, _, w in log.items] == [((0, 0), (False, None)), ((20, 0), (True, 2)),
                                                 ((40, 0), (True, 4))]
