"""Modal reactors: what a transition does to reactions, timers, actions, contained reactors and connections,
and the errors for malformed modes. (LF's own modal tests run in test_lf_conformance.py.)"""

from __future__ import annotations

import pytest
from reactor_programs import Log

from reflow.errors import CausalityError, EffectError, PortConnectionError, ReactorError
from reflow.reactor import Reactor, Tag, msec, reaction, reaction_graph_of, run


class Blinker(Reactor):
    """Mode on: a 10 ms timer and a 5 ms action; mode off: nothing. A 'toggle' input switches off, and back
    on by history or reset (the subclasses)."""

    def __init__(self, log: Log) -> None:
        super().__init__("blink")
        self.log = log
        self.toggle = self.input("toggle")
        self.on, self.off = self.mode("on", initial=True), self.mode("off")
        with self.on:
            self.t = self.timer("t", 0, msec(10))
            self.echo = self.logical_action("echo", msec(5))

    @reaction(triggers="t", effects="echo", mode="on")
    def tick(self) -> None:
        self.log.add(self, "tick")
        self.echo.schedule(self.logical_time)

    @reaction(triggers="echo", mode="on")
    def echoed(self) -> None:
        self.log.add(self, ("echo", self.echo.value))

    @reaction(triggers="toggle", effects="reset(off)", mode="on")
    def go_off(self) -> None:
        self.off.set()

    @reaction(triggers="startup", mode="on")
    def first(self) -> None:
        self.log.add(self, "startup on")

    @reaction(triggers="reset", mode="on")
    def again(self) -> None:
        self.log.add(self, "reset on")


class HistoryBlinker(Blinker):
    @reaction(triggers="toggle", effects="history(on)", mode="off")
    def go_on(self) -> None:
        self.on.set()


class ResetBlinker(Blinker):
    @reaction(triggers="toggle", effects="reset(on)", mode="off")
    def go_on(self) -> None:
        self.on.set()


class Switcher(Reactor):
    def __init__(self, child: Blinker, at: tuple[int, ...]) -> None:
        super().__init__("main")
        self.child = self.add(child)
        self.at = at
        self.t = self.timer("t", 0, msec(1))

    @reaction(triggers="t", effects="blink.toggle")
    def maybe(self) -> None:
        if self.logical_time in self.at:
            self.child.toggle.set(True)


def events(log: Log) -> list[tuple[tuple[int, int], object]]:
    return [(t, w) for t, _, w in log.items]


def test_history_resumes_timers_and_actions_with_their_remaining_delay() -> None:
    log = Log()
    run(Switcher(HistoryBlinker(log), (msec(12), msec(20))), timeout=msec(30))
    assert events(log) == [
        ((0, 0), "tick"), ((0, 0), "startup on"), ((msec(5), 0), ("echo", 0)), ((msec(10), 0), "tick"),
        # off at 12: the echo due at 15 had 3 ms left, the tick due at 20 had 8; back on at 20 (history)
        ((msec(23), 0), ("echo", msec(10))), ((msec(28), 0), "tick")]


def test_reset_restarts_timers_and_drops_pending_actions() -> None:
    log = Log()
    run(Switcher(ResetBlinker(log), (msec(12), msec(20))), timeout=msec(30))
    assert events(log) == [
        ((0, 0), "tick"), ((0, 0), "startup on"), ((msec(5), 0), ("echo", 0)), ((msec(10), 0), "tick"),
        # back on at 20 by reset: the timer restarts one microstep later, the pending echo is gone
        ((msec(20), 1), "tick"), ((msec(20), 1), "reset on"), ((msec(25), 0), ("echo", msec(20))),
        ((msec(30), 0), "tick")]


def test_transitions_take_effect_at_the_end_of_the_tag() -> None:
    """At the tag of the switch, every reaction still sees the old mode (both toggles cannot chain)."""
    log = Log()
    main = Switcher(ResetBlinker(log), (msec(12),))
    result = run(main, timeout=msec(13), trace=True)
    switched = [e for e in result.trace if e.tag == Tag(msec(12), 0)]
    assert [e.reaction for e in switched] == ["main.maybe", "main.blink.go_off"]
    assert dict(switched[1].writes) == {"main.blink.off": "reset"}  # the request is a write, in the trace


class Inner(Reactor):
    """A modal reactor inside a mode: reset by the outer reset, kept by the outer history."""

    def __init__(self, log: Log) -> None:
        super().__init__("inner")
        self.log = log
        self.step = self.input("step")
        self.a, self.b = self.mode("a", initial=True), self.mode("b")

    @reaction(triggers="step", effects="history(b)", mode="a")
    def in_a(self) -> None:
        self.log.add(self, "a")
        self.b.set()

    @reaction(triggers="step", effects="history(a)", mode="b")
    def in_b(self) -> None:
        self.log.add(self, "b")
        self.a.set()

    @reaction(triggers="reset", mode="a")
    def reset_a(self) -> None:
        self.log.add(self, "reset a")


class Outer(Reactor):
    """Steps the inner reactor from mode 'inside' three times, leaves by history, comes back by reset."""

    def __init__(self, log: Log) -> None:
        super().__init__("main")
        self.t = self.timer("t", 0, 10)
        self.inside, self.outside = self.mode("inside", initial=True), self.mode("outside")
        with self.inside:
            self.inner = self.add(Inner(log))
        self.n = 0

    @reaction(triggers="t", effects=("inner.step", "history(outside)"), mode="inside")
    def drive(self) -> None:
        self.n += 1
        self.inner.step.set(self.n)
        if self.n == 3:
            self.outside.set()

    @reaction(triggers="t", effects="reset(inside)", mode="outside")
    def back(self) -> None:
        self.inside.set()


def test_a_reset_reaches_modal_reactors_inside_the_mode() -> None:
    log = Log()
    run(Outer(log), timeout=60)
    # a, b, a at 0, 10, 20 (then out, inner left in b); back in by reset at 30: inner restarts in a
    assert [(t, w) for t, _, w in log.items] == [((0, 0), "a"), ((10, 0), "b"), ((20, 0), "a"),
                                                 ((30, 1), "reset a"), ((40, 0), "a"), ((50, 0), "b"),
                                                 ((60, 0), "a")]


def test_mode_errors() -> None:
    class NoInitial(Reactor):
        def __init__(self) -> None:
            super().__init__("main")
            self.mode("a")

    with pytest.raises(ReactorError, match="has modes but none is initial"):
        run(NoInitial())

    class TwoInitial(Reactor):
        def __init__(self) -> None:
            super().__init__("main")
            self.mode("a", initial=True)
            self.mode("b", initial=True)

    with pytest.raises(ReactorError, match="already has an initial mode"):
        TwoInitial()

    class Nested(Reactor):
        def __init__(self) -> None:
            super().__init__("main")
            a, b = self.mode("a", initial=True), self.mode("b")
            with a, b:
                pass

    with pytest.raises(ReactorError, match="modes of one reactor do not nest"):
        Nested()

    class Unknown(Reactor):
        def __init__(self) -> None:
            super().__init__("main")
            self.mode("a", initial=True)

        @reaction(triggers="startup", mode="z")
        def r(self) -> None: ...

    with pytest.raises(ReactorError, match="declared in mode 'z', which main does not declare"):
        run(Unknown())

    class Foreign(Reactor):
        def __init__(self) -> None:
            super().__init__("main")
            a = self.mode("a", initial=True)
            with a:
                self.t = self.timer("t")

        @reaction(triggers="t")
        def r(self) -> None: ...

    with pytest.raises(ReactorError, match=r"names 't', which is declared in mode 'a'"):
        run(Foreign())

    class ResetOutside(Reactor):
        @reaction(triggers="reset")
        def r(self) -> None: ...

    with pytest.raises(ReactorError, match="'reset' triggers only reactions inside a mode"):
        run(ResetOutside("main"))

    class Undeclared(Reactor):
        def __init__(self) -> None:
            super().__init__("main")
            self.a, self.b = self.mode("a", initial=True), self.mode("b")

        @reaction(triggers="startup", mode="a")
        def r(self) -> None:
            self.b.set()

    with pytest.raises(EffectError, match=r"sets mode main\.b, which is not among its effects; add 'reset"):
        run(Undeclared())


def test_reactions_in_different_modes_are_not_ordered_so_modes_break_cycles() -> None:
    """LF's ModalCycleBreaker in miniature: without modes, declaration order closes a cycle."""
    def program(modal: bool) -> Reactor:
        class Loop(Reactor):
            def __init__(self) -> None:
                super().__init__("loop")
                self.in1, self.in2, self.out = self.input("in1"), self.input("in2"), self.output("out")
                if modal:
                    self.mode("two")
                    self.mode("one", initial=True)

            @reaction(triggers="in2", mode="two" if modal else None)
            def take(self) -> None: ...

            @reaction(triggers="in1", effects="out", mode="one" if modal else None)
            def forward(self) -> None: ...

        class Main(Reactor):
            def __init__(self) -> None:
                super().__init__("main")
                loop = self.add(Loop())
                self.connect(loop.out, loop.in2)

        return Main()

    with pytest.raises(CausalityError):
        reaction_graph_of(program(False))
    assert {(e.src, e.dst) for e in reaction_graph_of(program(True)).edges} == {
        ("main.loop.forward", "main.loop.take")}


def test_one_port_may_have_a_driver_per_mode() -> None:
    class Two(Reactor):
        def __init__(self, same_mode: bool) -> None:
            super().__init__("main")
            self.out = self.output("out")
            a, b = self.mode("a", initial=True), self.mode("b")
            x, y = self.add(Reactor("x")), self.add(Reactor("y"))
            x.out, y.out = x.output("o"), y.output("o")
            with a:
                self.connect(x.out, self.out)
            with a if same_mode else b:
                self.connect(y.out, self.out)

    Two(same_mode=False)
    with pytest.raises(PortConnectionError, match="already driven by another connection"):
        Two(same_mode=True)
