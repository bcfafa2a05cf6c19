"""LF test programs, translated: composition, timers, actions, `after`, microsteps, stop (test/Python/src)."""

from __future__ import annotations

from lf_lib import Count, PassThrough, TestCount, check, lf

from reflow.reactor import Reactor, clock, msec, reaction, sec


# --- Composition.lf, CompositionAfter.lf ---
class ClockSource(Reactor):
    def __init__(self, name: str = "s", offset: int = sec(1), period: int = sec(2)) -> None:
        super().__init__(name)
        self.y = self.output("y")
        self.t = self.timer("t", offset, period)
        self.count = 0

    @reaction(triggers="t", effects="y")
    def tick(self) -> None:
        self.count += 1
        self.y.set(self.count)


class CountingTest(Reactor):
    def __init__(self, name: str = "d") -> None:
        super().__init__(name)
        self.x = self.input("x")
        self.count = 0

    @reaction(triggers="x")
    def receive(self) -> None:
        self.count += 1
        check(self.x.value == self.count, f"FAILURE: Expected {self.count}")

    @reaction(triggers="shutdown")
    def done(self) -> None:
        check(self.count > 0, "FAILURE: No data received.")


class Composition(Reactor):
    def __init__(self, after: int | None = None) -> None:
        super().__init__("main")
        s, d = self.add(ClockSource()), self.add(CountingTest())
        self.connect(s.y, d.x, after=after)


@lf("test/Python/src/Composition.lf", timeout=sec(10))
def composition() -> Reactor:
    return Composition()


@lf("test/Python/src/CompositionAfter.lf", timeout=sec(10))
def composition_after() -> Reactor:
    return Composition(after=sec(5))


# --- CompositionGain.lf ---
class Gain(Reactor):
    def __init__(self, name: str = "gain", scale: int = 2) -> None:
        super().__init__(name)
        self.x = self.input("x")
        self.y = self.output("y")
        self.scale = scale

    @reaction(triggers="x", effects="y")
    def scale_(self) -> None:
        self.y.set(self.x.value * self.scale)


class Wrapper(Reactor):
    def __init__(self) -> None:
        super().__init__("wrapper")
        self.x, self.y = self.input("x"), self.output("y")
        gain = self.add(Gain())
        self.connect(self.x, gain.x)
        self.connect(gain.y, self.y)


class CompositionGain(Reactor):
    def __init__(self) -> None:
        super().__init__("main")
        self.wrapper = self.add(Wrapper())

    @reaction(triggers="startup", effects="wrapper.x")
    def start(self) -> None:
        self.wrapper.x.set(42)

    @reaction(triggers="wrapper.y")
    def receive(self) -> None:
        check(self.wrapper.y.value == 42 * 2, f"ERROR: Received value should have been {42 * 2}")


@lf("test/Python/src/CompositionGain.lf")
def composition_gain() -> Reactor:
    return CompositionGain()


# --- CountSelf.lf ---
class CountSelf2(Reactor):
    def __init__(self, delay: int = msec(100)) -> None:
        super().__init__("d")
        self.out = self.output("out")
        self.a = self.logical_action("a")
        self.delay = delay

    @reaction(triggers="startup", effects=("a", "out"))
    def start(self) -> None:
        self.out.set(0)
        self.a.schedule(1, self.delay)

    @reaction(triggers="a", effects=("a", "out"))
    def again(self) -> None:
        self.out.set(self.a.value)
        self.a.schedule(self.a.value + 1, self.delay)


class CountSelf(Reactor):
    def __init__(self) -> None:
        super().__init__("main")
        d, t = self.add(CountSelf2()), self.add(TestCount("t", start=0, num_inputs=11))
        self.connect(d.out, t.inp)


@lf("test/Python/src/CountSelf.lf", timeout=sec(1))
def count_self() -> Reactor:
    return CountSelf()


# --- CountTest.lf ---
class CountTestTest(Reactor):
    def __init__(self) -> None:
        super().__init__("test")
        self.c = self.input("c")
        self.i = 0

    @reaction(triggers="c")
    def receive(self) -> None:
        self.i += 1
        check(self.c.value == self.i, f"ERROR: Expected {self.i} but got {self.c.value}.")

    @reaction(triggers="shutdown")
    def done(self) -> None:
        check(self.i == 4, f"ERROR: Test should have reacted 4 times, but reacted {self.i} times.")


class CountTest(Reactor):
    def __init__(self) -> None:
        super().__init__("main")
        count, test = self.add(Count()), self.add(CountTestTest())
        self.connect(count.out, test.c)


@lf("test/Python/src/CountTest.lf", timeout=sec(3))
def count_test() -> Reactor:
    return CountTest()


# --- DelayInt.lf ---
class Delay(Reactor):
    """The reaction to the action comes first: LF's delay pattern (no causality cycle)."""

    def __init__(self, delay: int = msec(100)) -> None:
        super().__init__("d")
        self.inp, self.out = self.input("in"), self.output("out")
        self.a = self.logical_action("a")
        self.delay = delay

    @reaction(triggers="a", effects="out")
    def emit(self) -> None:
        if self.a.value is not None and self.a.is_present:
            self.out.set(self.a.value)

    @reaction(triggers="in", effects="a")
    def take(self) -> None:
        self.a.schedule(self.inp.value, self.delay)


class DelayIntTest(Reactor):
    def __init__(self) -> None:
        super().__init__("t")
        self.inp = self.input("in")
        self.start_time = 0
        self.received_value = False

    @reaction(triggers="startup")
    def start(self) -> None:
        self.start_time = clock.logical()

    @reaction(triggers="in")
    def receive(self) -> None:
        self.received_value = True
        elapsed = clock.logical() - self.start_time
        check(elapsed == 100_000_000, f"ERROR: Expected elapsed time to be 100000000. It was {elapsed}.")
        check(self.inp.value == 42, f"ERROR: Expected input value to be 42. It was {self.inp.value}.")

    @reaction(triggers="shutdown")
    def done(self) -> None:
        check(self.received_value, "ERROR: No communication occurred!")


class DelayInt(Reactor):
    def __init__(self) -> None:
        super().__init__("main")
        self.d, t = self.add(Delay()), self.add(DelayIntTest())
        self.connect(self.d.out, t.inp)

    @reaction(triggers="startup", effects="d.in")
    def start(self) -> None:
        self.d.inp.set(42)


@lf("test/Python/src/DelayInt.lf")
def delay_int() -> Reactor:
    return DelayInt()


# --- ActionDelay.lf ---
class GeneratedDelay(Reactor):
    def __init__(self) -> None:
        super().__init__("g")
        self.y_in, self.y_out = self.input("y_in"), self.output("y_out")
        self.act = self.logical_action("act", msec(100))
        self.y_state = 0

    @reaction(triggers="y_in", effects="act")
    def take(self) -> None:
        self.y_state = self.y_in.value
        self.act.schedule(delay=0)

    @reaction(triggers="act", effects="y_out")
    def emit(self) -> None:
        self.y_out.set(self.y_state)


class StartupSource(Reactor):
    def __init__(self, name: str = "source", value: object = 1) -> None:
        super().__init__(name)
        self.out = self.output("out")
        self.value = value

    @reaction(triggers="startup", effects="out")
    def start(self) -> None:
        self.out.set(self.value)


class ElapsedSink(Reactor):
    def __init__(self, expected: int) -> None:
        super().__init__("sink")
        self.inp = self.input("in")
        self.expected = expected

    @reaction(triggers="in")
    def receive(self) -> None:
        check(self.logical_time == self.expected,
              f"FAILURE: Expected {self.expected} but got {self.logical_time}.")
        check(clock.logical() == clock.start() + self.logical_time, "absolute != start + elapsed")


class ActionDelay(Reactor):
    def __init__(self) -> None:
        super().__init__("main")
        source, sink = self.add(StartupSource()), self.add(ElapsedSink(msec(100)))
        g = self.add(GeneratedDelay())
        self.connect(source.out, g.y_in)
        self.connect(g.y_out, sink.inp)


@lf("test/Python/src/ActionDelay.lf")
def action_delay() -> Reactor:
    return ActionDelay()


# --- DelayedReaction.lf ---
class DelayedReaction(Reactor):
    def __init__(self) -> None:
        super().__init__("main")
        source, sink = self.add(StartupSource()), self.add(ElapsedSink(msec(100)))
        self.connect(source.out, sink.inp, after=msec(100))


@lf("test/Python/src/DelayedReaction.lf")
def delayed_reaction() -> Reactor:
    return DelayedReaction()


# --- ActionIsPresent.lf ---
class ActionIsPresent(Reactor):
    def __init__(self, offset: int = 1, period: int = msec(500)) -> None:
        super().__init__("main")
        self.a = self.logical_action("a")
        self.offset, self.period = offset, period
        self.first_time, self.success = True, False

    @reaction(triggers=("startup", "a"), effects="a")
    def react_(self) -> None:
        if not self.a.is_present:
            if self.offset == 0:
                self.success = True
            else:
                self.a.schedule(delay=self.offset)
                self.first_time = False
        elif not self.first_time:
            self.success = True

    @reaction(triggers="shutdown")
    def done(self) -> None:
        check(self.success, "Failed to print 'Hello World'")


@lf("test/Python/src/ActionIsPresent.lf")
def action_is_present() -> Reactor:
    return ActionIsPresent()


# --- After.lf, AfterZero.lf ---
class Foo(Reactor):
    def __init__(self) -> None:
        super().__init__("f")
        self.x, self.y = self.input("x"), self.output("y")

    @reaction(triggers="x", effects="y")
    def double(self) -> None:
        self.y.set(2 * self.x.value)


class AfterPrint(Reactor):
    def __init__(self, expected_time: int, microstep: int | None) -> None:
        super().__init__("p")
        self.x = self.input("x")
        self.expected_time, self.microstep = expected_time, microstep
        self.received = 0

    @reaction(triggers="x")
    def receive(self) -> None:
        self.received += 1
        check(self.x.value == 84, "ERROR: Expected result to be 84.")
        check(self.logical_time == self.expected_time, f"ERROR: Expected logical time to be "
                                                       f"{self.expected_time}, got {self.logical_time}.")
        check(self.microstep is None or self.tag.microstep == self.microstep,
              f"ERROR: Expected microstep to be {self.microstep}")
        self.expected_time += sec(1)

    @reaction(triggers="shutdown")
    def done(self) -> None:
        check(self.received > 0, "ERROR: Final reactor received no data.")


class After(Reactor):
    def __init__(self, after: int) -> None:
        super().__init__("main")
        self.f = self.add(Foo())
        p = self.add(AfterPrint(after, 1 if after == 0 else None))
        self.t = self.timer("t", 0, sec(1))
        self.connect(self.f.y, p.x, after=after)

    @reaction(triggers="t", effects="f.x")
    def tick(self) -> None:
        self.f.x.set(42)


@lf("test/Python/src/After.lf", timeout=sec(3))
def after() -> Reactor:
    return After(msec(10))


@lf("test/Python/src/AfterZero.lf", timeout=sec(3))
def after_zero() -> Reactor:
    return After(0)


# --- AfterCycles.lf ---
class AfterCycles(Reactor):
    def __init__(self) -> None:
        super().__init__("main")
        s = self.add(StartupSource("s"))
        self.w0, self.w1 = self.add(PassThrough("w0")), self.add(PassThrough("w1"))
        self.connect(s.out, self.w0.inp, after=msec(10))
        self.connect(s.out, self.w1.inp, after=msec(20))
        self.count = 0

    @reaction(triggers="w0.out")
    def from0(self) -> None:
        self.count += 1
        check(self.logical_time == msec(10), "Time should have been 10000000.")
        check(self.w0.out.value == 1, "Value should have been 1.")

    @reaction(triggers="w1.out")
    def from1(self) -> None:
        self.count += 1
        check(self.logical_time == msec(20), "Time should have been 20000000.")
        check(self.w1.out.value == 1, "Value should have been 1.")

    @reaction(triggers="shutdown")
    def done(self) -> None:
        check(self.count == 2, "Top-level reactions should have been triggered but were not.")


@lf("test/Python/src/AfterCycles.lf")
def after_cycles() -> Reactor:
    return AfterCycles()


# --- AfterOverlapped.lf ---
class OverlappedTest(Reactor):
    def __init__(self) -> None:
        super().__init__("test")
        self.c = self.input("c")
        self.i = self.received = 0

    @reaction(triggers="c")
    def receive(self) -> None:
        self.received += 1
        self.i += 1
        check(self.c.value == self.i, f"ERROR: Expected {self.i} but got {self.c.value}.")
        expected = sec(2) + sec(1) * (self.c.value - 1)
        check(self.logical_time == expected, f"ERROR: Expected logical time to be {expected}")

    @reaction(triggers="shutdown")
    def done(self) -> None:
        check(self.received > 0, "ERROR: Final reactor received no data.")


class AfterOverlapped(Reactor):
    def __init__(self) -> None:
        super().__init__("main")
        count, test = self.add(Count()), self.add(OverlappedTest())
        self.connect(count.out, test.c, after=sec(2))


@lf("test/Python/src/AfterOverlapped.lf", timeout=sec(5))
def after_overlapped() -> Reactor:
    return AfterOverlapped()


# --- DelayedAction.lf ---
class DelayedAction(Reactor):
    def __init__(self) -> None:
        super().__init__("main")
        self.t = self.timer("t", 0, sec(1))
        self.a = self.logical_action("a")
        self.count = 0

    @reaction(triggers="t", effects="a")
    def tick(self) -> None:
        self.a.schedule(delay=msec(100))

    @reaction(triggers="a")
    def fired(self) -> None:
        expected = self.count * 1_000_000_000 + 100_000_000
        self.count += 1
        check(self.logical_time == expected, f"Expected {expected} but got {self.logical_time}.")


@lf("test/Python/src/DelayedAction.lf", timeout=sec(5))
def delayed_action() -> Reactor:
    return DelayedAction()


# --- Determinism.lf ---
class Destination(Reactor):
    def __init__(self, expected: int = 2, step: int = 0) -> None:
        super().__init__("d")
        self.x, self.y = self.input("x"), self.input("y")
        self.s, self.step = expected, step

    @reaction(triggers=("x", "y"))
    def receive(self) -> None:
        total = (self.x.value if self.x.is_present else 0) + (self.y.value if self.y.is_present else 0)
        check(total == self.s, f"FAILURE: Expected sum to be {self.s}, but it was {total}.")
        self.s += self.step


class Determinism(Reactor):
    def __init__(self) -> None:
        super().__init__("main")
        s, d = self.add(StartupSource("s")), self.add(Destination())
        p1, p2 = self.add(PassThrough("p1")), self.add(PassThrough("p2"))
        self.connect(s.out, d.y)
        self.connect(s.out, p1.inp)
        self.connect(p1.out, p2.inp)
        self.connect(p2.out, d.x)


@lf("test/Python/src/Determinism.lf")
def determinism() -> Reactor:
    return Determinism()


# --- DoubleReaction.lf ---
class DoubleReaction(Reactor):
    def __init__(self) -> None:
        super().__init__("main")
        c1, c2 = self.add(ClockSource("c1", 0, sec(1))), self.add(ClockSource("c2", 0, sec(1)))
        d = self.add(Destination(2, 2))
        self.connect(c1.y, d.x)
        self.connect(c2.y, d.y)


@lf("test/Python/src/DoubleReaction.lf", timeout=sec(10))
def double_reaction() -> Reactor:
    return DoubleReaction()


# --- DoubleInvocation.lf ---
class Ball(Reactor):
    def __init__(self) -> None:
        super().__init__("b1")
        self.position, self.velocity = self.output("position"), self.output("velocity")
        self.trigger = self.timer("trigger", 0, sec(1))
        self.p = 200

    @reaction(triggers="trigger", effects=("position", "velocity"))
    def move(self) -> None:
        self.position.set(self.p)
        self.velocity.set(-1)
        self.p -= 1


class BallPrint(Reactor):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.velocity, self.position = self.input("velocity"), self.input("position")
        self.previous = -1

    @reaction(triggers="startup")
    def start(self) -> None:
        pass

    @reaction(triggers=("position", "velocity"))
    def receive(self) -> None:
        if self.position.is_present:
            check(self.position.value != self.previous, "ERROR: Multiple firings at the same logical time!")
            self.previous = self.position.value


class DoubleInvocation(Reactor):
    def __init__(self) -> None:
        super().__init__("main")
        b1 = self.add(Ball())
        for printer in (self.add(BallPrint("p")), self.add(BallPrint("plot"))):
            self.connect(b1.position, printer.position)
            self.connect(b1.velocity, printer.velocity)


@lf("test/Python/src/DoubleInvocation.lf", timeout=sec(5))
def double_invocation() -> Reactor:
    return DoubleInvocation()


# --- DoublePort.lf ---
class CountMicrostep(Reactor):
    def __init__(self) -> None:
        super().__init__("cm")
        self.out = self.output("out")
        self.act = self.logical_action("act")
        self.t = self.timer("t", 0, sec(1))
        self.count = 1

    @reaction(triggers="t", effects="act")
    def tick(self) -> None:
        self.act.schedule(self.count, 0)
        self.count += 1

    @reaction(triggers="act", effects="out")
    def emit(self) -> None:
        self.out.set(self.act.value)


class NotTogether(Reactor):
    def __init__(self) -> None:
        super().__init__("p")
        self.inp, self.inp2 = self.input("in"), self.input("in2")

    @reaction(triggers=("in", "in2"))
    def receive(self) -> None:
        check(not (self.inp.is_present and self.inp2.is_present), "ERROR: invalid logical simultaneity.")


class DoublePort(Reactor):
    def __init__(self) -> None:
        super().__init__("main")
        c, cm, p = self.add(Count("c")), self.add(CountMicrostep()), self.add(NotTogether())
        self.connect(c.out, p.inp)
        self.connect(cm.out, p.inp2)


@lf("test/Python/src/DoublePort.lf", timeout=msec(900))
def double_port() -> Reactor:
    return DoublePort()


# --- DoubleTrigger.lf ---
class DoubleTrigger(Reactor):
    def __init__(self) -> None:
        super().__init__("main")
        self.t1, self.t2 = self.timer("t1"), self.timer("t2")
        self.s = 0

    @reaction(triggers=("t1", "t2"))
    def tick(self) -> None:
        self.s += 1
        check(self.s <= 1, "FAILURE: Reaction was invoked twice at one tag.")

    @reaction(triggers="shutdown")
    def done(self) -> None:
        check(self.s == 1, "FAILURE: Reaction was not invoked exactly once.")


@lf("test/Python/src/DoubleTrigger.lf", timeout=sec(1))
def double_trigger() -> Reactor:
    return DoubleTrigger()


# --- Gain.lf ---
class GainTest(Reactor):
    def __init__(self) -> None:
        super().__init__("d")
        self.x = self.input("x")
        self.received_value = False

    @reaction(triggers="x")
    def receive(self) -> None:
        self.received_value = True
        check(self.x.value == 2, "ERROR: Expected 2!")

    @reaction(triggers="shutdown")
    def done(self) -> None:
        check(self.received_value, "ERROR: No value received by Test reactor!")


class GainMain(Reactor):
    def __init__(self) -> None:
        super().__init__("main")
        self.g, d = self.add(Gain("g")), self.add(GainTest())
        self.connect(self.g.y, d.x)

    @reaction(triggers="startup", effects="g.x")
    def start(self) -> None:
        self.g.x.set(1)


@lf("test/Python/src/Gain.lf")
def gain() -> Reactor:
    return GainMain()


# --- GetMicroStep.lf ---
class GetMicroStep(Reactor):
    def __init__(self) -> None:
        super().__init__("main")
        self.s = 1
        self.l = self.logical_action("l")

    @reaction(triggers="startup", effects="l")
    def start(self) -> None:
        self.l.schedule(delay=0)

    @reaction(triggers="l", effects="l")
    def step(self) -> None:
        check(self.tag.microstep == self.s, f"expected microstep {self.s}, got {self.tag.microstep} instead")
        self.s += 1
        if self.s < 10:
            self.l.schedule(delay=0)

    @reaction(triggers="shutdown")
    def done(self) -> None:  # not in LF's file, which only checks what runs: all nine must have run
        check(self.s == 10, f"only {self.s - 1} microsteps ran")


@lf("test/Python/src/GetMicroStep.lf")
def get_micro_step() -> Reactor:
    return GetMicroStep()


# --- Hello.lf ---
class Reschedule(Reactor):
    def __init__(self, name: str, period: int = sec(2)) -> None:
        super().__init__(name)
        self.t = self.timer("t", sec(1), period)
        self.a = self.logical_action("a")
        self.count = self.previous_time = 0

    @reaction(triggers="t", effects="a")
    def tick(self) -> None:
        self.a.schedule(delay=msec(200))
        self.previous_time = clock.logical()

    @reaction(triggers="a")
    def fired(self) -> None:
        self.count += 1
        check(self.a.value is None, "FAILURE: Expected a.value to be None, but it exists.")
        elapsed = clock.logical() - self.previous_time
        check(elapsed == 200_000_000, f"FAILURE: Expected 200ms of logical time to elapse but got {elapsed}.")


class Inside(Reactor):
    def __init__(self, period: int = sec(1)) -> None:
        super().__init__("composite_instance")
        self.add(Reschedule("third_instance", period))


class Hello(Reactor):
    def __init__(self) -> None:
        super().__init__("main")
        self.add(Reschedule("first_instance", sec(4)))
        self.add(Reschedule("second_instance"))
        self.add(Inside())


@lf("test/Python/src/Hello.lf", timeout=sec(10))
def hello() -> Reactor:
    return Hello()


# --- HelloWorld.lf ---
class HelloWorld2(Reactor):
    def __init__(self) -> None:
        super().__init__("a")
        self.success = False

    @reaction(triggers="startup")
    def start(self) -> None:
        self.success = True

    @reaction(triggers="shutdown")
    def done(self) -> None:
        check(self.success, "ERROR: startup reaction not executed.")


class HelloWorld(Reactor):
    def __init__(self) -> None:
        super().__init__("main")
        self.add(HelloWorld2())


@lf("test/Python/src/HelloWorld.lf")
def hello_world() -> Reactor:
    return HelloWorld()


# --- Microsteps.lf ---
class MicrostepDestination(Reactor):
    def __init__(self) -> None:
        super().__init__("d")
        self.x, self.y = self.input("x"), self.input("y")

    @reaction(triggers=("x", "y"))
    def receive(self) -> None:
        check(self.logical_time == 0, f"Expected elapsed time to be 0, but it was {self.logical_time}.")
        count = int(self.x.is_present) + int(self.y.is_present)
        check(count == 1, f"Expected exactly one input to be present but got {count}.")


class Microsteps(Reactor):
    def __init__(self) -> None:
        super().__init__("main")
        self.start_ = self.timer("start")
        self.repeat = self.logical_action("repeat")
        self.d = self.add(MicrostepDestination())

    @reaction(triggers="start", effects=("d.x", "repeat"))
    def begin(self) -> None:
        self.d.x.set(1)
        self.repeat.schedule(delay=0)

    @reaction(triggers="repeat", effects="d.y")
    def again(self) -> None:
        self.d.y.set(1)


@lf("test/Python/src/Microsteps.lf")
def microsteps() -> Reactor:
    return Microsteps()


# --- MovingAverage.lf (lib/Test.lf's TestDouble inlined) ---
class MASource(Reactor):
    def __init__(self) -> None:
        super().__init__("s")
        self.out = self.output("out")
        self.clock = self.timer("clock", 0, msec(200))
        self.count = 0

    @reaction(triggers="clock", effects="out")
    def tick(self) -> None:
        self.out.set(self.count)
        self.count += 1


class MovingAverageImpl(Reactor):
    def __init__(self) -> None:
        super().__init__("m")
        self.inp, self.out = self.input("in"), self.output("out")
        self.delay_line = [0.0, 0.0, 0.0]
        self.index = 0

    @reaction(triggers="in", effects="out")
    def average(self) -> None:
        self.out.set((self.inp.value + sum(self.delay_line)) / 4.0)
        self.delay_line[self.index] = self.inp.value
        self.index = (self.index + 1) % 3


class TestDouble(Reactor):
    def __init__(self, expected: list[float]) -> None:
        super().__init__("p")
        self.inp = self.input("in")
        self.expected = expected
        self.count = 0

    @reaction(triggers="in")
    def receive(self) -> None:
        check(self.inp.value == self.expected[self.count],
              f"ERROR: Expected {self.expected[self.count]}, got {self.inp.value}.")
        self.count += 1


class MovingAverage(Reactor):
    def __init__(self) -> None:
        super().__init__("main")
        s, m, p = self.add(MASource()), self.add(MovingAverageImpl()), self.add(TestDouble(
            [0.0, 0.25, 0.75, 1.5, 2.5, 3.5]))
        self.connect(s.out, m.inp)
        self.connect(m.out, p.inp)


@lf("test/Python/src/MovingAverage.lf", timeout=sec(1))
def moving_average() -> Reactor:
    return MovingAverage()


# --- PeriodicDesugared.lf ---
class PeriodicDesugared(Reactor):
    def __init__(self, offset: int = 0, period: int = msec(500)) -> None:
        super().__init__("main")
        self.init = self.logical_action("init", offset)
        self.recur = self.logical_action("recur", period)
        self.offset = offset
        self.ticks: list[int] = []

    @reaction(triggers="startup", effects=("init", "recur"))
    def start(self) -> None:
        if self.offset == 0:
            self.recur.schedule(delay=0)
        else:
            self.init.schedule(delay=0)

    @reaction(triggers=("init", "recur"), effects="recur")
    def tick(self) -> None:
        self.ticks.append(self.logical_time)
        self.recur.schedule(delay=0)

    @reaction(triggers="shutdown")
    def done(self) -> None:  # LF's file only runs it; this checks the period it desugars
        check(self.ticks == [msec(500), msec(1000)], f"ticks at {self.ticks}")


@lf("test/Python/src/PeriodicDesugared.lf", timeout=sec(1))
def periodic_desugared() -> Reactor:
    return PeriodicDesugared()


# --- PingPong.lf ---
class Ping(Reactor):
    def __init__(self, count: int = 10) -> None:
        super().__init__("ping")
        self.receive, self.send = self.input("receive"), self.output("send")
        self.serve = self.logical_action("serve")
        self.pings_left = count

    @reaction(triggers=("startup", "serve"), effects="send")
    def ping(self) -> None:
        self.send.set(self.pings_left)
        self.pings_left -= 1

    @reaction(triggers="receive", effects="serve")
    def pong(self) -> None:
        if self.pings_left > 0:
            self.serve.schedule(delay=0)
        else:
            self.request_stop()


class Pong(Reactor):
    def __init__(self, expected: int = 10) -> None:
        super().__init__("pong")
        self.receive, self.send = self.input("receive"), self.output("send")
        self.expected = expected
        self.count = 0

    @reaction(triggers="receive", effects="send")
    def pong(self) -> None:
        self.count += 1
        self.send.set(self.receive.value)

    @reaction(triggers="shutdown")
    def done(self) -> None:
        check(self.count == self.expected,
              f"ERROR: Pong expected to receive {self.expected} inputs, but it received {self.count}.")


class PingPong(Reactor):
    def __init__(self) -> None:
        super().__init__("main")
        ping, pong = self.add(Ping()), self.add(Pong())
        self.connect(ping.send, pong.receive)
        self.connect(pong.send, ping.receive)


@lf("test/Python/src/PingPong.lf")
def ping_pong() -> Reactor:
    return PingPong()


# --- Pipeline.lf ---
class TakeTime(Reactor):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.inp, self.out = self.input("in"), self.output("out")

    @reaction(triggers="in", effects="out")
    def work(self) -> None:
        offset = 0
        for _ in range(10000):
            offset += 1
        self.out.set(self.inp.value + offset)


class PipelinePrint(Reactor):
    def __init__(self) -> None:
        super().__init__("p")
        self.inp = self.input("in")
        self.count = self.received = 0

    @reaction(triggers="in")
    def receive(self) -> None:
        self.received += 1
        check(self.inp.value == self.count + 40000, f"ERROR: Expected {self.count + 40000}.")
        self.count += 1

    @reaction(triggers="shutdown")
    def done(self) -> None:
        check(self.received > 0, "ERROR: Final reactor received no data.")


class Pipeline(Reactor):
    def __init__(self) -> None:
        super().__init__("main")
        self.t = self.timer("t", 0, msec(200))
        self.count = 0
        self.c = [self.add(TakeTime(f"c{i}")) for i in range(1, 5)]
        p = self.add(PipelinePrint())
        for a, b in zip(self.c, self.c[1:], strict=False):
            self.connect(a.out, b.inp, after=msec(200))
        self.connect(self.c[3].out, p.inp)

    @reaction(triggers="t", effects="c1.in")
    def feed(self) -> None:
        self.c[0].inp.set(self.count)
        self.count += 1


@lf("test/Python/src/Pipeline.lf", timeout=sec(2))
def pipeline() -> Reactor:
    return Pipeline()


# --- ScheduleTwice.lf (C, concurrent/) ---
class ScheduleTwice(Reactor):
    def __init__(self) -> None:
        super().__init__("main")
        self.a = self.logical_action("a")
        self.rc_count = 0

    @reaction(triggers="startup", effects="a")
    def start(self) -> None:
        self.a.schedule(42, msec(100))
        self.a.schedule(84, msec(100))

    @reaction(triggers="a")
    def receive(self) -> None:
        if self.tag.microstep == 0:
            check(self.a.value == 42, "ERROR: Expected 42 at microstep 0.")
        if self.tag.microstep == 1:
            check(self.a.value == 84, "ERROR: Expected 84 at microstep 1.")
        self.rc_count += 1

    @reaction(triggers="shutdown")
    def done(self) -> None:
        check(self.rc_count >= 2, "Didn't see two events.")


@lf("test/C/src/concurrent/ScheduleTwice.lf")
def schedule_twice() -> Reactor:
    return ScheduleTwice()
