"""Hierarchy, banks and multiports, physical actions, real time, deadlines."""

from __future__ import annotations

import threading
import time

import pytest
from reactor_programs import Add, Log, Recorder, Source

from reflow.errors import ReactorError
from reflow.reactor import Reactor, Tag, msec, reaction, run, sec


class Inner(Reactor):
    """A composite: its input goes through a contained Add to its output."""

    def __init__(self, name: str = "inner") -> None:
        super().__init__(name)
        self.inp = self.input("in", int)
        self.out = self.output("out", int)
        add = self.add(Add("add", 5))
        self.connect(self.inp, add.inp)
        self.connect(add.out, self.out)


class Outer(Reactor):
    """Passes values through a composite, and drives/reads a child directly from its own reactions."""

    def __init__(self, log: Log) -> None:
        super().__init__("main")
        self.log = log
        src = self.add(Source(period=0))
        inner = self.add(Inner())
        rec = self.add(Recorder(log))
        self.direct = self.add(Add("direct", 1000))
        self.connect(src.out, inner.inp)
        self.connect(inner.out, rec.inp)

    @reaction(triggers="startup", effects="direct.in")
    def drive(self) -> None:
        self.direct.inp.set(1)

    @reaction(triggers="direct.out")
    def read(self) -> None:
        self.log.add(self, ("direct", self.direct.out.get()))


def test_hierarchy_passthrough_and_parent_reactions_on_children_ports() -> None:
    log = Log()
    main = Outer(log)
    run(main)
    assert ((0, 0), "main.recorder", 6) in log.items
    assert ((0, 0), "main", ("direct", 1001)) in log.items
    assert main.direct.path == "main.direct"


class Fan(Reactor):
    """main scatters into a bank through the members' inputs; the bank feeds a multiport."""

    def __init__(self, log: Log, width: int, with_back: bool = False) -> None:
        super().__init__("main")
        self.log = log
        self.members = self.bank("bank", width, lambda i: Add("x", 10 * i))
        self.sink = self.add(Gather(log, width))
        self.connect([m.out for m in self.members], self.sink.inp)
        if with_back:
            self.back = self.input_multiport("back", width, int, required=True)

    @reaction(triggers="startup", effects="bank.in")
    def scatter(self) -> None:
        for i, m in enumerate(self.members):
            m.inp.set(i)


class Gather(Reactor):
    def __init__(self, log: Log, width: int) -> None:
        super().__init__("gather")
        self.log = log
        self.inp = self.input_multiport("in", width, int)

    @reaction(triggers="in")
    def gather(self) -> None:
        self.log.add(self, [p.value for p in self.inp])


def test_unconnected_required_multiport_is_rejected() -> None:
    with pytest.raises(ReactorError, match=r"required input main\.back\[0\] of reactor main is not "):
        run(Fan(Log(), 3, with_back=True))


def test_bank_members_have_indices_paths_and_values() -> None:
    log = Log()
    main = Fan(log, 4)
    result = run(main, workers=2)
    assert [m.path for m in main.members] == [f"main.bank[{i}]" for i in range(4)]
    assert [m.bank_index for m in main.members] == [0, 1, 2, 3]
    assert log.items == [((0, 0), "main.gather", [0 + 0, 1 + 10, 2 + 20, 3 + 30])]
    assert result.stats.max_batch == 4  # the bank's reactions ran as one parallel batch


class Sensor(Reactor):
    def __init__(self, log: Log, n: int) -> None:
        super().__init__("main")
        self.log, self.n = log, n
        self.reading = self.physical_action("reading", min_delay=msec(1))
        self.sent_at: list[int] = []
        self.thread: threading.Thread | None = None

    def produce(self) -> None:
        for i in range(self.n):
            time.sleep(0.002)
            self.sent_at.append(self.physical_time())
            self.reading.schedule(i)
        self.request_stop()

    @reaction(triggers="startup")
    def start(self) -> None:
        self.thread = threading.Thread(target=self.produce)
        self.thread.start()

    @reaction(triggers="reading")
    def got(self) -> None:
        self.log.add(self, (self.reading.value, self.physical_time()))

    @reaction(triggers="shutdown")
    def stop(self) -> None:
        assert self.thread is not None
        self.thread.join()


def test_physical_actions_from_a_thread_in_real_time() -> None:
    log = Log()
    main = Sensor(log, 5)
    run(main, fast=False)
    assert [w[0] for _, _, w in log.items] == [0, 1, 2, 3, 4]
    tags = [t for t, _, _ in log.items]
    assert tags == sorted(tags)
    for (tag, _, (_, seen_at)), sent in zip(log.items, main.sent_at, strict=True):
        assert tag[0] >= sent + msec(1)  # timestamped with physical time + min delay
        assert seen_at >= tag[0]  # real time: reactions never run before their logical time


class Slow(Reactor):
    def __init__(self, sleep: float) -> None:
        super().__init__("slow")
        self.sleep = sleep
        self.out = self.output("out")

    @reaction(triggers="startup", effects="out")
    def slow(self) -> None:
        time.sleep(self.sleep)
        self.out.set(1)


class Checker(Reactor):
    """Deadline 20 ms after the tag."""

    def __init__(self, log: Log) -> None:
        super().__init__("checker")
        self.log = log
        self.inp = self.input("in")
        self.out = self.output("out")

    @reaction(triggers="in", effects="out", deadline=msec(20), on_deadline="late")
    def on_time(self) -> None:
        self.log.add(self, "on time")

    def late(self) -> None:
        self.out.set("late")  # the handler has the reaction's effects
        self.log.add(self, "missed")


class PatientChecker(Checker):
    """Same reaction, deadline 10 s: never missed here, however loaded the machine."""

    @reaction(triggers="in", effects="out", deadline=sec(10), on_deadline="late")
    def on_time(self) -> None:
        self.log.add(self, "on time")


class WithDeadline(Reactor):
    def __init__(self, log: Log, sleep: float, checker: type[Checker]) -> None:
        super().__init__("top")
        slow = self.add(Slow(sleep))
        self.checker = self.add(checker(log))
        self.connect(slow.out, self.checker.inp)


def test_deadline_handler_runs_when_the_deadline_is_missed() -> None:
    log = Log()
    result = run(WithDeadline(log, 0.06, Checker))
    assert log.items == [((0, 0), "top.checker", "missed")]
    assert result.stats.deadline_misses == 1
    log = Log()
    result = run(WithDeadline(log, 0.0, PatientChecker))
    assert log.items == [((0, 0), "top.checker", "on time")] and result.stats.deadline_misses == 0


def test_real_time_mode_waits_for_physical_time() -> None:
    log = Log()

    class Ticker(Reactor):
        def __init__(self) -> None:
            super().__init__("main")
            self.t = self.timer("t", 0, msec(15))

        @reaction(triggers="t")
        def tick(self) -> None:
            log.add(self, self.physical_time())

    t0 = time.perf_counter()
    run(Ticker(), fast=False, timeout=msec(45))
    assert time.perf_counter() - t0 >= 0.045
    assert len(log.items) == 4
    for (tag, _, physical) in log.items:
        assert physical >= tag[0]
    log = Log()
    run(Ticker(), fast=True, timeout=sec(3))  # fast mode: no waiting
    assert len(log.items) == 3000 // 15 + 1


def test_physical_actions_keep_the_program_alive_until_the_timeout() -> None:
    class Idle(Reactor):
        def __init__(self) -> None:
            super().__init__("main")
            self.never = self.physical_action("never")
            self.ended: list[int] = []

        @reaction(triggers="shutdown")
        def bye(self) -> None:
            self.ended.append(self.logical_time)

    idle = Idle()
    t0 = time.perf_counter()
    result = run(idle, timeout=msec(30))
    assert time.perf_counter() - t0 >= 0.03
    assert idle.ended == [msec(30)] and result.final_tag.time == msec(30)


def test_without_keepalive_the_program_ends_before_the_timeout() -> None:
    log = Log()

    class Short(Reactor):
        def __init__(self) -> None:
            super().__init__("main")
            src = self.add(Source(period=0, offset=3))
            rec = self.add(Recorder(log))
            self.connect(src.out, rec.inp)

    assert run(Short(), timeout=msec(1000)).final_tag == Tag(3, 1)
