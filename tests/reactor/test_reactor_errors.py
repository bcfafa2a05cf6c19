"""Bad programs get clear errors naming what is at fault; API calls are checked against the lifecycle
phase."""

from __future__ import annotations

import pytest
from reactor_programs import Add, Log, Recorder, Source

from reflow.errors import (
    CausalityError,
    EffectError,
    LifecycleError,
    PortConnectionError,
    ReactionFailed,
    ReactorError,
)
from reflow.reactor import Reactor, reaction, run


def test_unconnected_required_input() -> None:
    class Needy(Reactor):
        def __init__(self) -> None:
            super().__init__("lonely")
            self.inp = self.input("in", required=True)

    class Main(Reactor):
        def __init__(self) -> None:
            super().__init__("main")
            self.add(Needy())

    with pytest.raises(ReactorError, match=r"required input main\.lonely\.in .*not connected"):
        run(Main())


def test_an_unconnected_input_is_simply_absent() -> None:
    """As in LF, an input is optional unless declared ``required=True``: unconnected, it never triggers."""
    class Main(Reactor):
        def __init__(self) -> None:
            super().__init__("main")
            self.inp = self.input("in")
            self.add(Add("lonely"))

        @reaction(triggers="in")
        def never(self) -> None:
            raise AssertionError("absent input triggered a reaction")

    assert run(Main()).stats.reactions == 0


def test_connecting_two_outputs() -> None:
    class Main(Reactor):
        def __init__(self) -> None:
            super().__init__("main")
            a, b = self.add(Source("a")), self.add(Source("b"))
            self.connect(a.out, b.out)

    with pytest.raises(PortConnectionError, match=r"main\.a\.out to main\.b\.out: both are outputs"):
        Main()


def test_input_driven_twice_and_width_mismatch_and_foreign_ports() -> None:
    class Twice(Reactor):
        def __init__(self) -> None:
            super().__init__("main")
            a, b, c = self.add(Source("a")), self.add(Source("b")), self.add(Add("c"))
            self.connect(a.out, c.inp)
            self.connect(b.out, c.inp)

    with pytest.raises(PortConnectionError, match=r"main\.c\.in is already driven"):
        Twice()

    class Widths(Reactor):
        def __init__(self) -> None:
            super().__init__("main")
            a = self.add(Source("a"))
            adds = self.bank("adds", 2, lambda i: Add("x"))
            self.connect([a.out, a.out, a.out], [x.inp for x in adds])

    with pytest.raises(PortConnectionError, match="cannot connect 3 ports to 2 ports"):
        Widths()

    stranger = Source("stranger")

    class Foreign(Reactor):
        def __init__(self) -> None:
            super().__init__("main")
            c = self.add(Add("c"))
            self.connect(stranger.out, c.inp)

    with pytest.raises(PortConnectionError, match=r"add it with self\.add"):
        Foreign()


def test_writing_a_port_not_declared_as_effect() -> None:
    class Sneaky(Reactor):
        def __init__(self) -> None:
            super().__init__("main")
            self.out = self.output("out")
            self.log = Log()

        @reaction(triggers="startup")
        def sneak(self) -> None:
            self.out.set(1)

        @reaction(triggers="shutdown")
        def bye(self) -> None:
            self.log.add(self, "shutdown")

    main = Sneaky()
    with pytest.raises(EffectError, match=r"reaction main\.sneak writes to main\.out, which is not among its "
                                          "effects"):
        run(main)
    assert main.log.items == [((0, 1), "main", "shutdown")]


def test_reading_a_port_not_declared() -> None:
    class Peek(Reactor):
        def __init__(self) -> None:
            super().__init__("main")
            self.src = self.add(Source())
            self.inp = self.input("in", required=False)

        @reaction(triggers="startup")
        def peek(self) -> None:
            _ = self.inp.value

    with pytest.raises(EffectError, match=r"main\.peek reads main\.in"):
        run(Peek())


class Boom(Reactor):
    def __init__(self, log: Log) -> None:
        super().__init__("boom")
        self.log = log
        self.t = self.timer("t", 0, 10)

    @reaction(triggers="t")
    def tick(self) -> None:
        if self.logical_time == 20:
            raise ValueError("sensor on fire")

    @reaction(triggers="shutdown")
    def bye(self) -> None:
        self.log.add(self, "shutdown")


def test_a_raising_reaction_stops_the_program_after_shutdown() -> None:
    log = Log()

    class Main(Reactor):
        def __init__(self) -> None:
            super().__init__("main")
            self.add(Boom(log))
            rec = self.add(Recorder(log))
            src = self.add(Source(period=10))
            self.connect(src.out, rec.inp)

    with pytest.raises(ReactionFailed, match=r"reaction main\.boom\.tick of reactor main\.boom raised at tag "
                                             r"\(20 ns, 0\): ValueError: sensor on fire") as info:
        run(Main(), workers=2)
    assert (info.value.reactor, info.value.reaction) == ("main.boom", "main.boom.tick")
    assert isinstance(info.value.__cause__, ValueError)
    assert ((20, 1), "main.boom", "shutdown") in log.items
    assert ((20, 1), "main.recorder", "shutdown") in log.items
    assert max(t for t, _, _ in log.items) == (20, 1)


def test_causality_cycle_names_the_reactions() -> None:
    class Loop(Reactor):
        def __init__(self, after: int | None) -> None:
            super().__init__("main")
            a, b = self.add(Add("a")), self.add(Add("b"))
            self.connect(a.out, b.inp)
            self.connect(b.out, a.inp, after=after)

    with pytest.raises(CausalityError, match=r"main\.a\.add -> main\.b\.add -> main\.a\.add|"
                                             r"main\.b\.add -> main\.a\.add -> main\.b\.add") as info:
        run(Loop(None))
    assert set(info.value.cycle) == {"main.a.add", "main.b.add"}
    assert run(Loop(5)).stats.reactions == 0  # an `after` delay breaks the cycle


def test_bad_reaction_declarations() -> None:
    class Unknown(Reactor):
        def __init__(self) -> None:
            super().__init__("main")

        @reaction(triggers="nope")
        def r(self) -> None: ...

    with pytest.raises(ReactorError, match=r"reaction main\.r names 'nope', which main does not declare"):
        run(Unknown())

    class WriteInput(Reactor):
        def __init__(self) -> None:
            super().__init__("main")
            self.inp = self.input("in", required=False)

        @reaction(triggers="startup", effects="in")
        def r(self) -> None: ...

    with pytest.raises(ReactorError, match=r"input main\.in cannot be used as an effect"):
        run(WriteInput())
    with pytest.raises(ReactorError, match="deadline"):
        reaction(triggers="startup", deadline=5)


def test_lifecycle_phases() -> None:
    log = Log()
    src = Source()
    with pytest.raises(LifecycleError, match=r"source\.out\.set\(\) may only be called inside a reaction"):
        src.out.set(1)
    with pytest.raises(LifecycleError, match="request_stop"):
        src.request_stop()

    class Main(Reactor):
        def __init__(self) -> None:
            super().__init__("main")
            self.src = self.add(Source(period=0))
            rec = self.add(Recorder(log))
            self.connect(self.src.out, rec.inp)

        @reaction(triggers="startup")
        def grow(self) -> None:
            self.input("late")

    main = Main()
    with pytest.raises(LifecycleError, match=r"main\.input\('late'\) called in phase running"):
        run(main)
    with pytest.raises(LifecycleError, match="make a fresh instance"):
        run(main)
    with pytest.raises(LifecycleError, match=r"main\.timer\('t2'\) called in phase done"):
        main.timer("t2")
