"""LF test programs, translated: deadlines and their priority, stop and timeouts, and the rest of the basics
(test/Python/src, a few from test/C/src).

The deadline tests that LF runs in real time sleep for seconds; the translations keep their structure with
times scaled down by 100 (noted at each), so that the suite stays fast. LF's DeadlinePriority,
DeadlineInherited and DeadlineWithBanks observe which reaction ran first through a global counter that
reactors share, with ``single-threaded: true``; reflow's reactions may run in parallel (and in other
processes), so their translations check the same order where reflow defines it: in the trace.
"""

from __future__ import annotations

import time

from lf_lib import Count, PassThrough, Sender, check, first_at_each_tag, lf

from reflow.reactor import Reactor, Tag, TraceEntry, msec, reaction, sec, usec


# --- Deadline.lf (times / 100: period 30 ms, sleep 15 ms, deadline 10 ms, timeout 60 ms; real time) ---
class DeadlineSource(Reactor):
    def __init__(self, period: int) -> None:
        super().__init__("s")
        self.y = self.output("y")
        self.t = self.timer("t", 0, period)
        self.count = 0

    @reaction(triggers="t", effects="y")
    def tick(self) -> None:
        if self.count % 2 != 0:
            time.sleep(0.015)
        self.y.set(self.count)
        self.count += 1


class DeadlineDestination(Reactor):
    def __init__(self, timeout: int) -> None:
        super().__init__("d")
        self.x = self.input("x")
        self.timeout = timeout  # a per-instance deadline: LF's deadline(timeout) on a parameter
        self.count = 0

    @reaction(triggers="x", deadline="timeout", on_deadline="late")
    def receive(self) -> None:
        check(self.count % 2 == 0, "ERROR: Failed to detect deadline.")
        self.count += 1

    def late(self) -> None:
        check(self.count % 2 != 0, "ERROR: Deadline miss handler invoked without deadline violation.")
        self.count += 1


class Deadline(Reactor):
    def __init__(self) -> None:
        super().__init__("main")
        s, d = self.add(DeadlineSource(msec(30))), self.add(DeadlineDestination(msec(10)))
        self.connect(s.y, d.x)


@lf("test/Python/src/Deadline.lf", timeout=msec(60), fast=False, physical=True)
def deadline() -> Reactor:
    return Deadline()


# --- DeadlineHandledAbove.lf (sleep 20 ms instead of 200) ---
class DeadlineReactor(Reactor):
    def __init__(self, threshold: int) -> None:
        super().__init__("d")
        self.x = self.input("x")
        self.deadline_violation = self.output("deadline_violation")
        self.threshold = threshold

    @reaction(triggers="x", effects="deadline_violation", deadline="threshold", on_deadline="violated")
    def receive(self) -> None:
        check(False, "ERROR: Deadline violation was not detected!")

    def violated(self) -> None:
        self.deadline_violation.set(True)


class DeadlineHandledAbove(Reactor):
    def __init__(self) -> None:
        super().__init__("main")
        self.d = self.add(DeadlineReactor(msec(10)))
        self.violation_detected = False

    @reaction(triggers="startup", effects="d.x")
    def start(self) -> None:
        time.sleep(0.02)
        self.d.x.set(42)

    @reaction(triggers="d.deadline_violation")
    def handled(self) -> None:
        if self.d.deadline_violation.value is True:
            self.violation_detected = True

    @reaction(triggers="shutdown")
    def done(self) -> None:
        check(self.violation_detected, "FAILURE. Container did not react to deadline violation.")


@lf("test/Python/src/DeadlineHandledAbove.lf", physical=True)
def deadline_handled_above() -> Reactor:
    return DeadlineHandledAbove()


# --- SimpleDeadline.lf ---
class ViolationPrint(Reactor):
    def __init__(self) -> None:
        super().__init__("p")
        self.inp = self.input("in")
        self.seen = False

    @reaction(triggers="in")
    def receive(self) -> None:
        self.seen = self.inp.value is True

    @reaction(triggers="shutdown")
    def done(self) -> None:  # LF's file prints; a violation must have been reported
        check(self.seen, "no deadline violation was reported")


class SimpleDeadline(Reactor):
    def __init__(self) -> None:
        super().__init__("main")
        self.start_ = self.timer("start")
        self.d, p = self.add(DeadlineReactor(msec(10))), self.add(ViolationPrint())
        self.connect(self.d.deadline_violation, p.inp)

    @reaction(triggers="start", effects="d.x")
    def begin(self) -> None:
        time.sleep(0.02)
        self.d.x.set(42)


@lf("test/Python/src/SimpleDeadline.lf", physical=True)
def simple_deadline() -> Reactor:
    return SimpleDeadline()


# --- DeadlineZero.lf ---
class Detector(Reactor):
    def __init__(self) -> None:
        super().__init__("d")
        self.trigger = self.input("trigger")
        self.cnt = 0

    @reaction(triggers="trigger", deadline=0, on_deadline="missed")
    def receive(self) -> None:
        check(False, f"ERROR: failed to detect zero-duration deadline at iteration {self.cnt}.")

    def missed(self) -> None:
        self.cnt += 1

    @reaction(triggers="shutdown")
    def done(self) -> None:  # not in LF's file: every pulse (11 in real time) was late
        check(self.cnt == 11, f"the handler ran {self.cnt} times")


class Generator(Reactor):
    def __init__(self, period: int) -> None:
        super().__init__("g")
        self.pulse = self.output("pulse")
        self.t = self.timer("t", 0, period)

    @reaction(triggers="t", effects="pulse")
    def tick(self) -> None:
        self.pulse.set(0)


class DeadlineZero(Reactor):
    def __init__(self) -> None:
        super().__init__("main")
        g, d = self.add(Generator(msec(1))), self.add(Detector())
        self.connect(g.pulse, d.trigger)


@lf("test/Python/src/DeadlineZero.lf", timeout=msec(10), fast=False, physical=True)
def deadline_zero() -> Reactor:  # times / 100: period 1 ms, timeout 10 ms; real time, as in LF
    return DeadlineZero()


# --- DeadlineAnytime.lf ---
class Anytime(Reactor):
    def __init__(self) -> None:
        super().__init__("a")
        self.a = self.logical_action("a")
        self.i = 0

    @reaction(triggers="startup", effects="a", deadline=msec(10), on_deadline="late")
    def work(self) -> None:
        self.i = 0
        while not self.check_deadline(invoke_handler=True):
            pass

    def late(self) -> None:
        self.a.schedule(delay=0)

    @reaction(triggers="a")
    def after(self) -> None:
        self.i = 42
        check(not self.check_deadline(), "a reaction without deadline reports a missed deadline")

    @reaction(triggers="shutdown")
    def done(self) -> None:
        check(self.i == 42, "the deadline handler did not run")


class DeadlineAnytime(Reactor):
    def __init__(self) -> None:
        super().__init__("main")
        self.add(Anytime())


@lf("test/Python/src/DeadlineAnytime.lf", physical=True)
def deadline_anytime() -> Reactor:
    return DeadlineAnytime()


# --- DeadlinePriority.lf, DeadlineInherited.lf ---
class NoDeadline(Reactor):
    def __init__(self) -> None:
        super().__init__("a")
        self.t = self.timer("t", 0, msec(100))

    @reaction(triggers="t")
    def tick(self) -> None:
        pass


class WithDeadline(Reactor):
    def __init__(self, inherited: bool) -> None:
        super().__init__("b")
        self.t = self.timer("t", 0, msec(100))
        self.inherited = inherited

    @reaction(triggers="t")
    def first(self) -> None:  # DeadlineInherited: precedes the deadline reaction, inherits its deadline
        pass

    @reaction(triggers="t", deadline=sec(100), on_deadline="late")
    def tick(self) -> None:
        pass

    def late(self) -> None:
        pass


class DeadlinePriority(Reactor):
    def __init__(self, inherited: bool) -> None:
        super().__init__("main")
        self.add(NoDeadline())
        self.add(WithDeadline(inherited))


def _priority_order(trace: list[TraceEntry]) -> None:
    first_at_each_tag(trace, "main.b.tick", "main.a.tick")


def _inherited_order(trace: list[TraceEntry]) -> None:
    first_at_each_tag(trace, "main.b.first", "main.a.tick")
    first_at_each_tag(trace, "main.b.tick", "main.a.tick")


@lf("test/Python/src/DeadlinePriority.lf", timeout=sec(1), check_trace=_priority_order)
def deadline_priority() -> Reactor:
    return DeadlinePriority(inherited=False)


@lf("test/Python/src/DeadlineInherited.lf", timeout=sec(1), check_trace=_inherited_order)
def deadline_inherited() -> Reactor:
    return DeadlinePriority(inherited=True)


# --- DeadlineWithBanks.lf ---
class BankMember(Reactor):
    def __init__(self) -> None:
        super().__init__("rp")
        self.t = self.timer("t", 0, msec(100))
        self.out = self.output("out")

    @reaction(triggers="t", effects="out")
    def tick(self) -> None:
        self.out.set(self.bank_index)


class DeadlineSink(Reactor):
    def __init__(self, name: str, dead: int) -> None:
        super().__init__(name)
        self.inp = self.input("in")
        self.dead = dead

    @reaction(triggers="in", deadline="dead", on_deadline="late")
    def receive(self) -> None:
        pass

    def late(self) -> None:
        pass


class DeadlineWithBanks(Reactor):
    def __init__(self) -> None:
        super().__init__("main")
        rp = self.bank("rp", 4, lambda i: BankMember())
        sinks = [self.add(DeadlineSink(f"s{i + 1}", msec(d))) for i, d in enumerate((14, 12, 11, 13))]
        self.connect([m.out for m in rp], [s.inp for s in sinks])


def _banks_order(trace: list[TraceEntry]) -> None:
    """LF's expected counts: bank 2 first (11 ms downstream), then 1 (12), 3 (13), 0 (14)."""
    for tag in sorted({e.tag for e in trace}):
        order = [e.reaction for e in trace if e.tag == tag and e.reaction.startswith("main.rp[")]
        check(order == [f"main.rp[{i}].tick" for i in (2, 1, 3, 0)], f"bank order at {tag}: {order}")


@lf("test/Python/src/DeadlineWithBanks.lf", timeout=msec(300), check_trace=_banks_order)
def deadline_with_banks() -> Reactor:
    return DeadlineWithBanks()


# --- DeadlineWithAfterDelay.lf ---
class AfterDelaySource(Reactor):
    def __init__(self) -> None:
        super().__init__("a")
        self.out = self.output("out")
        self.t = self.timer("t", 0, msec(100))

    @reaction(triggers="t", effects="out")
    def tick(self) -> None:
        self.out.set(1)


class SinkWithDeadline(Reactor):
    def __init__(self) -> None:
        super().__init__("b")
        self.inp = self.input("in")

    @reaction(triggers="in", deadline=sec(100), on_deadline="late")
    def receive(self) -> None:
        pass

    def late(self) -> None:
        check(False, "a 100 s deadline was missed")


class DeadlineWithAfterDelay(Reactor):
    def __init__(self) -> None:
        super().__init__("main")
        a, b = self.add(AfterDelaySource()), self.add(SinkWithDeadline())
        self.connect(a.out, b.inp, after=msec(100))


def _after_delay_order(trace: list[TraceEntry]) -> None:
    """LF's global counter: each sink reaction follows one source reaction (at a tag 100 ms before)."""
    sources = sum(e.reaction == "main.a.tick" for e in trace)
    sinks = [e.tag for e in trace if e.reaction == "main.b.receive"]
    check(sinks == [Tag(msec(100) * k, 0) for k in range(1, len(sinks) + 1)] and sources == len(sinks) + 1,
          f"{sources} sends, receptions at {sinks}")


@lf("test/Python/src/DeadlineWithAfterDelay.lf", timeout=sec(1), check_trace=_after_delay_order)
def deadline_with_after_delay() -> Reactor:
    return DeadlineWithAfterDelay()


# --- DeadlineUpdateDecrease.lf (sleeps 60 ms as LF does; timeout 50 ms) ---
class DecreaseDeadline(Reactor):
    def __init__(self) -> None:
        super().__init__("decreaseDeadline")
        self.t = self.timer("t", 0, msec(50))
        self.deadline_decreased = False
        self.handled = 0

    @reaction(triggers="t", deadline=msec(100), on_deadline="late")
    def work(self) -> None:
        check(not self.deadline_decreased, "Deadline not updated correctly.")
        self.update_deadline(msec(50))
        time.sleep(0.06)
        check(self.check_deadline(), "Deadline update failed. Deadline handler was not invoked on lag of 50 "
                                     "msec.")
        self.deadline_decreased = True

    def late(self) -> None:
        self.handled += 1
        time.sleep(0.06)

    @reaction(triggers="shutdown")
    def done(self) -> None:  # LF's file expects the handler from check_deadline at 0 and instead of the body
        check(self.handled == 2, f"the deadline handler ran {self.handled} times")  # at 50 ms


class DeadlineUpdateDecrease(Reactor):
    def __init__(self) -> None:
        super().__init__("main")
        self.add(DecreaseDeadline())


@lf("test/Python/src/DeadlineUpdateDecrease.lf", timeout=msec(50), fast=False, physical=True)
def deadline_update_decrease() -> Reactor:
    return DeadlineUpdateDecrease()


# --- DeadlineUpdateIncrease.lf (sleeps 0.2 s and 0.8 s as LF does; timeout 1500 ms) ---
class IncreaseDeadline(Reactor):
    def __init__(self) -> None:
        super().__init__("increaseDeadline")
        self.t = self.timer("t", 0, sec(1))
        self.deadline_increased = False
        self.deadline_checked = False
        self.bodies = 0

    @reaction(triggers="t", deadline=msec(200), on_deadline="late")
    def work(self) -> None:
        self.bodies += 1
        if not self.deadline_increased:
            self.update_deadline(msec(500))
            time.sleep(0.2)
            check(not self.check_deadline(), "Deadline update failed. Deadline handler should not invoked on "
                                             "lag of 200 msec.")
            time.sleep(0.8)
            check(self.check_deadline(), "Deadline update failed. Deadline handler was not invoked on lag of "
                                         "1 sec.")
            self.deadline_increased = True
        # else: LF's "Deadline was not violated with lag smaller than 1 sec, as expected."

    def late(self) -> None:
        time.sleep(0.2)
        check(not self.deadline_checked, "Deadline should not be violated with lag smaller than 1 sec!")
        self.deadline_checked = True

    @reaction(triggers="shutdown")
    def done(self) -> None:  # what LF's prints show: the body ran at 0 and at 1 s, the handler once (at 0)
        check(self.bodies == 2 and self.deadline_checked, f"body ran {self.bodies} times, handler "
                                                          f"{'once' if self.deadline_checked else 'never'}")


class DeadlineUpdateIncrease(Reactor):
    def __init__(self) -> None:
        super().__init__("main")
        self.add(IncreaseDeadline())


@lf("test/Python/src/DeadlineUpdateIncrease.lf", timeout=msec(1500), fast=False, physical=True)
def deadline_update_increase() -> Reactor:
    return DeadlineUpdateIncrease()


# --- Stop.lf ---
class StopConsumer(Reactor):
    def __init__(self) -> None:
        super().__init__("consumer")
        self.inp = self.input("in")
        self.reaction_invoked_correctly = False

    @reaction(triggers="in")
    def receive(self) -> None:
        check(self.tag <= Tag(msec(10), 9), "ERROR: Invoked reaction(in) at tag bigger than shutdown.")
        if self.tag == Tag(msec(10), 8):
            self.request_stop()
        elif self.tag == Tag(msec(10), 9):
            self.reaction_invoked_correctly = True

    @reaction(triggers="shutdown")
    def done(self) -> None:
        check(self.tag <= Tag(msec(10), 9), f"ERROR: Shutdown invoked at tag {self.tag}. Failed to enforce "
                                            "timeout.")
        check(self.reaction_invoked_correctly, f"ERROR: Failed to invoke reaction(in) at tag {self.tag}.")


class Stop(Reactor):
    def __init__(self) -> None:
        super().__init__("main")
        consumer, producer = self.add(StopConsumer()), self.add(Sender("producer", break_interval=msec(1)))
        self.connect(producer.out, consumer.inp)


@lf("test/Python/src/Stop.lf", timeout=msec(11))
def stop() -> Reactor:
    return Stop()


# --- StopZero.lf ---
class StopZeroSender(Reactor):
    def __init__(self) -> None:
        super().__init__("sender")
        self.out = self.output("out")
        self.t = self.timer("t", 0, usec(1))
        self.act = self.logical_action("act")
        self.reaction_invoked_correctly = False

    @reaction(triggers="t", effects=("out", "act"))
    def tick(self) -> None:
        self.out.set(42)
        self.act.schedule(delay=0)
        if self.tag == Tag(0, 0):
            self.request_stop()
        check(self.tag <= Tag(0, 1), f"ERROR: Reaction called after shutdown at {self.tag}.")

    @reaction(triggers="act")
    def acted(self) -> None:
        if self.tag == Tag(0, 1):
            self.reaction_invoked_correctly = True

    @reaction(triggers="shutdown")
    def done(self) -> None:
        check(self.tag == Tag(0, 1), f"ERROR: Sender failed to stop the program in time. Stopping at "
                                     f"{self.tag}.")
        check(self.reaction_invoked_correctly, "ERROR: Sender reaction(act) was not invoked.")


class StopZeroReceiver(Reactor):
    def __init__(self) -> None:
        super().__init__("receiver")
        self.inp = self.input("in")

    @reaction(triggers="in")
    def receive(self) -> None:
        if self.tag == Tag(0, 0):
            self.request_stop()

    @reaction(triggers="shutdown")
    def done(self) -> None:
        check(self.tag == Tag(0, 1), f"ERROR: Receiver failed to stop the program in time. Stopping at "
                                     f"{self.tag}.")


class StopZero(Reactor):
    def __init__(self) -> None:
        super().__init__("main")
        sender, receiver = self.add(StopZeroSender()), self.add(StopZeroReceiver())
        self.connect(sender.out, receiver.inp)


@lf("test/Python/src/StopZero.lf")
def stop_zero() -> Reactor:
    return StopZero()


# --- TimeLimit.lf ---
class TimeLimitDestination(Reactor):
    def __init__(self) -> None:
        super().__init__("d")
        self.x = self.input("x")
        self.s = 1

    @reaction(triggers="x")
    def receive(self) -> None:
        check(self.x.value == self.s, f"ERROR: Expected {self.s} and got {self.x.value}.")
        self.s += 1

    @reaction(triggers="shutdown")
    def done(self) -> None:
        check(self.s == 12, f"ERROR: Expected 12 but got {self.s}.")


class TimeLimit(Reactor):
    def __init__(self) -> None:
        super().__init__("main")
        self.stop_ = self.timer("stop", sec(10))
        c, d = self.add(Count("c")), self.add(TimeLimitDestination())
        self.connect(c.out, d.x)

    @reaction(triggers="stop")
    def halt(self) -> None:
        self.request_stop()


@lf("test/Python/src/TimeLimit.lf")
def time_limit() -> Reactor:
    return TimeLimit()


# --- Timeout.lf, TimeoutZero.lf ---
class TimeoutConsumer(Reactor):
    def __init__(self, timeout: int) -> None:
        super().__init__("consumer")
        self.inp = self.input("in")
        self.timeout = timeout
        self.success = False

    @reaction(triggers="in")
    def receive(self) -> None:
        check(self.tag <= Tag(self.timeout, 0), f"ERROR: Tag {self.tag} received. Failed to enforce timeout.")
        if self.tag == Tag(self.timeout, 0):
            self.success = True

    @reaction(triggers="shutdown")
    def done(self) -> None:
        check(self.tag == Tag(self.timeout, 0) and self.success,
              f"ERROR: Shutdown invoked at tag {self.tag}. Failed to enforce timeout.")


class Timeout(Reactor):
    def __init__(self, timeout: int) -> None:
        super().__init__("main")
        consumer = self.add(TimeoutConsumer(timeout))
        producer = self.add(Sender("producer", break_interval=msec(1)))
        self.connect(producer.out, consumer.inp)


@lf("test/Python/src/Timeout.lf", timeout=msec(11))
def timeout() -> Reactor:
    return Timeout(msec(11))


@lf("test/Python/src/TimeoutZero.lf", timeout=0)
def timeout_zero() -> Reactor:
    return Timeout(0)


# --- Timers.lf ---
class Timers(Reactor):
    def __init__(self) -> None:
        super().__init__("main")
        self.t, self.t2 = self.timer("t", 0, sec(1)), self.timer("t2", 0, sec(2))
        self.counter = 0

    @reaction(triggers="t2")
    def two(self) -> None:
        self.counter += 2

    @reaction(triggers="t")
    def one(self) -> None:
        self.counter -= 1

    @reaction(triggers="shutdown")
    def done(self) -> None:
        check(self.counter == 1, f"Error: Expected 1 and got {self.counter}.")


@lf("test/Python/src/Timers.lf", timeout=sec(2))
def timers() -> Reactor:
    return Timers()


# --- Starvation.lf ---
class SuperDenseSender(Reactor):
    def __init__(self, number_of_iterations: int = 10) -> None:
        super().__init__("sender")
        self.loop = self.logical_action("loop")
        self.out = self.output("out")
        self.iterator, self.n = 0, number_of_iterations

    @reaction(triggers=("startup", "loop"), effects=("out", "loop"))
    def send(self) -> None:
        if self.iterator < self.n:
            self.loop.schedule(delay=0)
        self.iterator += 1
        self.out.set(42)

    @reaction(triggers="shutdown")
    def done(self) -> None:
        check(self.tag == Tag(0, self.n + 1), f"ERROR: Failed to properly enforce starvation at sender. "
                                              f"Shutting down at tag {self.tag}.")


class SuperDenseReceiver(Reactor):
    def __init__(self, number_of_iterations: int = 10) -> None:
        super().__init__("receiver")
        self.inp = self.input("in")
        self.n = number_of_iterations

    @reaction(triggers="in")
    def receive(self) -> None:
        pass

    @reaction(triggers="shutdown")
    def done(self) -> None:
        check(self.tag == Tag(0, self.n + 1), f"ERROR: Failed to properly enforce starvation at receiver. "
                                              f"Shutting down at tag {self.tag}.")


class Starvation(Reactor):
    def __init__(self) -> None:
        super().__init__("main")
        sender, receiver = self.add(SuperDenseSender()), self.add(SuperDenseReceiver())
        self.connect(sender.out, receiver.inp)


@lf("test/Python/src/Starvation.lf", timeout=sec(1))
def starvation() -> Reactor:
    return Starvation()


# --- Stride.lf ---
class StrideCount(Reactor):
    def __init__(self, stride: int) -> None:
        super().__init__("c")
        self.y = self.output("y")
        self.t = self.timer("t", 0, msec(100))
        self.count, self.stride = 1, stride

    @reaction(triggers="t", effects="y")
    def tick(self) -> None:
        self.y.set(self.count)
        self.count += self.stride


class Display(Reactor):
    def __init__(self) -> None:
        super().__init__("d")
        self.x = self.input("x")
        self.expected = 1

    @reaction(triggers="x")
    def receive(self) -> None:
        check(self.x.value == self.expected, f"ERROR: Expected {self.expected}.")
        self.expected += 2


class Stride(Reactor):
    def __init__(self) -> None:
        super().__init__("main")
        c, d = self.add(StrideCount(2)), self.add(Display())
        self.connect(c.y, d.x)


@lf("test/Python/src/Stride.lf", timeout=sec(2))
def stride() -> Reactor:
    return Stride()


# --- SelfLoop.lf ---
class Self(Reactor):
    def __init__(self) -> None:
        super().__init__("u")
        self.x, self.y = self.input("x"), self.output("y")
        self.a = self.logical_action("a")
        self.expected = 43

    @reaction(triggers="a", effects="y")
    def emit(self) -> None:
        self.y.set(self.a.value + 1)

    @reaction(triggers="x", effects="a")
    def take(self) -> None:
        check(self.x.value == self.expected, f"Expected {self.expected}.")
        self.expected += 1
        self.a.schedule(self.x.value, msec(100))

    @reaction(triggers="startup", effects="a")
    def start(self) -> None:
        self.a.schedule(42, 0)

    @reaction(triggers="shutdown")
    def done(self) -> None:
        check(self.expected > 43, "Received no data.")


class SelfLoop(Reactor):
    def __init__(self) -> None:
        super().__init__("main")
        u = self.add(Self())
        self.connect(u.y, u.x)


@lf("test/Python/src/SelfLoop.lf", timeout=sec(1))
def self_loop() -> Reactor:
    return SelfLoop()


# --- SendingInside.lf, SendingInside2.lf ---
class Printer(Reactor):
    def __init__(self, fixed: int | None) -> None:
        super().__init__("p")
        self.x = self.input("x")
        self.count, self.fixed = 1, fixed

    @reaction(triggers="x")
    def receive(self) -> None:
        expected = self.count if self.fixed is None else self.fixed
        check(self.x.value == expected, f"FAILURE: Expected {expected}.")
        self.count += 1


class SendingInside(Reactor):
    def __init__(self, period: int, fixed: int | None) -> None:
        super().__init__("main")
        self.t = self.timer("t", 0, period)
        self.p = self.add(Printer(fixed))
        self.count = 0

    @reaction(triggers="t", effects="p.x")
    def send(self) -> None:
        self.count += 1
        self.p.x.set(self.count)


@lf("test/Python/src/SendingInside.lf", timeout=sec(10))
def sending_inside() -> Reactor:
    return SendingInside(sec(1), None)


@lf("test/Python/src/SendingInside2.lf")
def sending_inside2() -> Reactor:
    return SendingInside(0, 1)


# --- ScheduleLogicalAction.lf ---
class ScheduleFoo(Reactor):
    def __init__(self) -> None:
        super().__init__("f")
        self.x, self.y = self.input("x"), self.output("y")
        self.a = self.logical_action("a")

    @reaction(triggers="x", effects=("y", "a"))
    def take(self) -> None:
        self.y.set(2 * self.x.value)
        self.a.schedule(delay=msec(500))

    @reaction(triggers="a", effects="y")
    def later(self) -> None:
        self.y.set(-42)


class TimePrint(Reactor):
    def __init__(self, step: int) -> None:
        super().__init__("p")
        self.x = self.input("x")
        self.expected_time, self.step = 0, step

    @reaction(triggers="x")
    def receive(self) -> None:
        check(self.logical_time == self.expected_time, f"ERROR: Expected logical time to be "
                                                       f"{self.expected_time}.")
        self.expected_time += self.step


class ScheduleLogicalAction(Reactor):
    def __init__(self) -> None:
        super().__init__("main")
        self.f, p = self.add(ScheduleFoo()), self.add(TimePrint(msec(500)))
        self.t = self.timer("t", 0, sec(1))
        self.connect(self.f.y, p.x)

    @reaction(triggers="t", effects="f.x")
    def tick(self) -> None:
        self.f.x.set(42)


@lf("test/Python/src/ScheduleLogicalAction.lf", timeout=sec(3))
def schedule_logical_action() -> Reactor:
    return ScheduleLogicalAction()


# --- ScheduleValue.lf ---
class ScheduleValue(Reactor):
    def __init__(self) -> None:
        super().__init__("main")
        self.a = self.logical_action("a")

    @reaction(triggers="startup", effects="a")
    def start(self) -> None:
        self.a.schedule("Hello", 0)

    @reaction(triggers="a")
    def receive(self) -> None:
        check(self.a.value == "Hello", "FAILURE: Should have received 'Hello'")


@lf("test/Python/src/ScheduleValue.lf", timeout=sec(3))
def schedule_value() -> Reactor:
    return ScheduleValue()


# --- Schedule.lf ---
class Schedule2(Reactor):
    def __init__(self) -> None:
        super().__init__("a")
        self.x = self.input("x")
        self.a = self.logical_action("a")

    @reaction(triggers="x", effects="a")
    def take(self) -> None:
        self.a.schedule(delay=msec(200))

    @reaction(triggers="a")
    def fired(self) -> None:
        check(self.logical_time == 200_000_000,
              f"Expected action time to be 200 msec. It was {self.logical_time} nsec.")


class Schedule(Reactor):
    def __init__(self) -> None:
        super().__init__("main")
        self.a = self.add(Schedule2())
        self.t = self.timer("t")

    @reaction(triggers="t", effects="a.x")
    def tick(self) -> None:
        self.a.x.set(1)


@lf("test/Python/src/Schedule.lf")
def schedule() -> Reactor:
    return Schedule()


# --- SlowingClock.lf ---
class SlowingClock(Reactor):
    def __init__(self) -> None:
        super().__init__("main")
        self.a = self.logical_action("a", msec(100))
        self.interval = self.expected_time = msec(100)

    @reaction(triggers="startup", effects="a")
    def start(self) -> None:
        self.a.schedule(delay=0)

    @reaction(triggers="a", effects="a")
    def slower(self) -> None:
        check(self.logical_time == self.expected_time,
              f"ERROR: Expected time to be: {self.expected_time} nsec.")
        self.a.schedule(delay=self.interval)
        self.expected_time += msec(100) + self.interval
        self.interval += msec(100)

    @reaction(triggers="shutdown")
    def done(self) -> None:
        check(self.expected_time == msec(1500), f"ERROR: Expected the next expected time to be: 1500000000 "
                                                f"nsec. It was: {self.expected_time} nsec.")


@lf("test/Python/src/SlowingClock.lf", timeout=sec(1))
def slowing_clock() -> Reactor:
    return SlowingClock()


# --- StartupOutFromInside.lf, ReadOutputOfContainedReactor.lf ---
class Bar(Reactor):
    def __init__(self, name: str = "bar") -> None:
        super().__init__(name)
        self.out = self.output("out")

    @reaction(triggers="startup", effects="out")
    def start(self) -> None:
        self.out.set(42)


class StartupOutFromInside(Reactor):
    def __init__(self) -> None:
        super().__init__("main")
        self.bar = self.add(Bar())

    @reaction(triggers="startup", sources="bar.out")
    def start(self) -> None:
        check(self.bar.out.value == 42, "Expected 42!")


@lf("test/Python/src/StartupOutFromInside.lf")
def startup_out_from_inside() -> Reactor:
    return StartupOutFromInside()


class ReadOutputOfContainedReactor(Reactor):
    def __init__(self) -> None:
        super().__init__("main")
        self.c = self.add(Bar("c"))
        self.count = 0

    @reaction(triggers="startup", sources="c.out")
    def first(self) -> None:
        check(self.c.out.value == 42, "Expected 42!")
        self.count += 1

    @reaction(triggers="c.out")
    def second(self) -> None:
        check(self.c.out.value == 42, "Expected 42!")
        self.count += 1

    @reaction(triggers=("startup", "c.out"))
    def third(self) -> None:
        check(self.c.out.value == 42, "Expected 42!")
        self.count += 1

    @reaction(triggers="shutdown")
    def done(self) -> None:
        check(self.count == 3, f"count {self.count}")


@lf("test/Python/src/ReadOutputOfContainedReactor.lf")
def read_output_of_contained_reactor() -> Reactor:
    return ReadOutputOfContainedReactor()


# --- ToReactionNested.lf ---
class CountContainer(Reactor):
    def __init__(self) -> None:
        super().__init__("s")
        self.out = self.output("out")
        c1 = self.add(Count("c1"))
        self.connect(c1.out, self.out)


class ToReactionNested(Reactor):
    def __init__(self) -> None:
        super().__init__("main")
        self.s = self.add(CountContainer())
        self.count, self.received = 1, False

    @reaction(triggers="s.out")
    def receive(self) -> None:
        if self.s.out.is_present:
            check(self.count == self.s.out.value, f"ERROR: Expected {self.count}.")
            self.received = True
        self.count += 1

    @reaction(triggers="shutdown")
    def done(self) -> None:
        check(self.received, "ERROR: No inputs present.")


@lf("test/Python/src/ToReactionNested.lf", timeout=sec(5))
def to_reaction_nested() -> Reactor:
    return ToReactionNested()


# --- TriggerDownstreamOnlyIfPresent.lf, TriggerDownstreamOnlyIfPresent2.lf ---
class AlternatingSource(Reactor):
    def __init__(self) -> None:
        super().__init__("s")
        self.a, self.b = self.output("a"), self.output("b")
        self.t = self.timer("t", 0, msec(200))
        self.count = 0

    @reaction(triggers="t", effects=("a", "b"))
    def tick(self) -> None:
        if self.count % 2 == 0:
            self.a.set(self.count)
        else:
            self.b.set(self.count)


class PresentDestination(Reactor):
    def __init__(self) -> None:
        super().__init__("d")
        self.a, self.b = self.input("a"), self.input("b")

    @reaction(triggers="a")
    def on_a(self) -> None:
        check(self.a.is_present, "Reaction to a triggered even though all inputs are absent!")

    @reaction(triggers="b")
    def on_b(self) -> None:
        check(self.b.is_present, "Reaction to b triggered even though all inputs are absent!")


class TriggerDownstreamOnlyIfPresent(Reactor):
    def __init__(self) -> None:
        super().__init__("main")
        s = self.bank("s", 2, lambda i: AlternatingSource())
        d = self.bank("d", 2, lambda i: PresentDestination())
        self.connect([x.a for x in s], [x.a for x in d])
        self.connect([x.b for x in s], [x.b for x in d])


@lf("test/Python/src/TriggerDownstreamOnlyIfPresent.lf", timeout=sec(1))
def trigger_downstream_only_if_present() -> Reactor:
    return TriggerDownstreamOnlyIfPresent()


# --- MultipleOutputs.lf ---
class TwoOutputs(Reactor):
    def __init__(self) -> None:
        super().__init__("c")
        self.x, self.z = self.output("x"), self.output("z")
        self.t = self.timer("t", 0, msec(100))

    @reaction(triggers="t", effects=("x", "z"))
    def tick(self) -> None:
        self.x.set(42)
        self.z.set(44)


class MultipleOutputs(Reactor):
    def __init__(self) -> None:
        super().__init__("main")
        self.add(TwoOutputs())
        self.triggered = False

    @reaction(triggers="c.z")
    def on_z(self) -> None:
        self.triggered = True

    @reaction(triggers="shutdown")
    def done(self) -> None:
        check(self.triggered, "Reaction never triggered.")


@lf("test/Python/src/MultipleOutputs.lf", timeout=sec(1))
def multiple_outputs() -> Reactor:
    return MultipleOutputs()


# --- Wcet.lf ---
class WcetSource(Reactor):
    def __init__(self) -> None:
        super().__init__("source")
        self.out1, self.out2 = self.output("out1"), self.output("out2")
        self.t = self.timer("t")

    @reaction(triggers="t", effects=("out1", "out2"))
    def tick(self) -> None:
        self.out1.set(5)
        self.out2.set(10)


class Work(Reactor):
    def __init__(self) -> None:
        super().__init__("work")
        self.in1, self.in2, self.out = self.input("in1"), self.input("in2"), self.output("out")

    @reaction(triggers=("in1", "in2"), effects="out", cost=1e-3)
    def work(self) -> None:
        a, b = self.in1.value, self.in2.value
        self.out.set(b * a if a > 10 else b + a)


class Wcet(Reactor):
    def __init__(self) -> None:
        super().__init__("main")
        source, work, sink = self.add(WcetSource()), self.add(Work()), self.add(PassThrough("print"))
        self.connect(source.out1, work.in1)
        self.connect(source.out2, work.in2)
        self.connect(work.out, sink.inp)
        self.sink = sink

    @reaction(triggers="print.out")
    def done(self) -> None:  # LF's Print only prints the result
        check(self.sink.out.value == 15, f"expected 15, got {self.sink.out.value}")


@lf("test/Python/src/Wcet.lf")
def wcet() -> Reactor:
    return Wcet()


# --- TestForPreviousOutput.lf (seeded: the file draws from an unseeded random source) ---
class PreviousOutputSource(Reactor):
    def __init__(self, seed: int) -> None:
        super().__init__(f"s{seed}")
        self.out = self.output("out")
        self.seed = seed

    @reaction(triggers="startup", effects="out")
    def maybe(self) -> None:
        import random

        if random.Random(self.seed).choice([0, 1]) == 1:
            self.out.set(21)

    @reaction(triggers="startup", effects="out")
    def double(self) -> None:
        self.out.set(2 * self.out.value if self.out.is_present else 42)


class Expect42(Reactor):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.inp = self.input("in")
        self.got = False

    @reaction(triggers="in")
    def receive(self) -> None:
        check(self.inp.value == 42, "FAILED: Expected 42.")
        self.got = True


class TestForPreviousOutput(Reactor):
    def __init__(self) -> None:
        super().__init__("main")
        for seed in range(4):  # both branches of the draw
            s, d = self.add(PreviousOutputSource(seed)), self.add(Expect42(f"d{seed}"))
            self.connect(s.out, d.inp)


@lf("test/Python/src/TestForPreviousOutput.lf")
def test_for_previous_output() -> Reactor:
    return TestForPreviousOutput()
