"""Lingua Franca's own test programs, translated to reflow: the shared part.

Each program of the conformance suite is a function that builds the main reactor, registered with ``@lf``
under the LF file it translates (lf-lang/lingua-franca, ``test/Python/src/...`` or ``test/C/src/...``). The
program keeps that file's own checks: where LF calls ``exit(1)`` the translation calls ``check``, which
raises, so the run fails with ``ReactionFailed`` naming the reaction, in any executor. Reactor classes live
at module level so that worker processes can unpickle them. This module also translates the reactors of
LF's ``lib/`` folder that many tests import (``Count``, ``TestCount``, ``TraceTesting``, ...).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from reflow.reactor import Reactor, TraceEntry, reaction, sec

LF_REPO = "lf-lang/lingua-franca"


def check(ok: bool, message: str) -> None:
    """LF's ``if not ok: exit(1)``: fail the reaction (and so the run) with ``message``."""
    if not ok:
        raise AssertionError(message)


@dataclass(frozen=True)
class LFProgram:
    """One translated LF test: its file, a factory for the main reactor, and how LF runs it (``timeout``,
    ``keepalive``, real time). ``physical`` marks programs whose tags depend on physical time (their traces
    are not compared across runs). Every program also runs in worker processes; ``local`` names reactors
    that stay in the scheduler's process there (those that schedule physical actions from threads of their
    own). ``check_trace`` checks what LF's file checks through a global variable shared by reactors (the
    order in which reactions ran at a tag): in reflow that order is the trace's, in any executor."""

    source: str
    make: Callable[[], Reactor]
    timeout: int | None = None
    keepalive: bool | None = None
    fast: bool = True
    physical: bool = False
    local: tuple[str, ...] = ()
    check_trace: Callable[[list[TraceEntry]], None] | None = None

    @property
    def name(self) -> str:
        return self.source.removeprefix("test/").removesuffix(".lf")


PROGRAMS: list[LFProgram] = []


def lf(source: str, *, timeout: int | None = None, keepalive: bool | None = None, fast: bool = True,
       physical: bool = False, local: tuple[str, ...] = (),
       check_trace: Callable[[list[TraceEntry]], None] | None = None) -> Callable[[Callable[[], Reactor]],
                                                                                   Callable[[], Reactor]]:
    """Register a translated program: ``source`` is the LF file's path in the LF repository."""
    def register(make: Callable[[], Reactor]) -> Callable[[], Reactor]:
        PROGRAMS.append(LFProgram(source, make, timeout, keepalive, fast, physical, local, check_trace))
        return make
    return register


def first_at_each_tag(trace: list[TraceEntry], before: str, after: str) -> None:
    """Reaction ``before`` ran ahead of reaction ``after`` at every tag where both ran (and both ran)."""
    seen = {(e.tag, e.reaction): i for i, e in enumerate(trace)}
    tags = {e.tag for e in trace if e.reaction == after}
    check(bool(tags), f"{after} never ran")
    for tag in tags:
        check((tag, before) in seen and seen[(tag, before)] < seen[(tag, after)],
              f"Deadline reaction was not executed first at {tag}: {before} should run before {after}")


# --- lib/Count.lf, lib/TestCount.lf, lib/TestCountMultiport.lf, lib/PassThrough.lf ---
class Count(Reactor):
    """lib/Count.lf: 1, 2, 3, ... every ``period`` from ``offset``."""

    def __init__(self, name: str = "count", offset: int = 0, period: int = sec(1)) -> None:
        super().__init__(name)
        self.t = self.timer("t", offset, period)
        self.out = self.output("out")
        self.count = 1

    @reaction(triggers="t", effects="out")
    def emit(self) -> None:
        self.out.set(self.count)
        self.count += 1


class TestCount(Reactor):
    """lib/TestCount.lf: inputs count from ``start`` by ``stride``; ``num_inputs`` of them in all."""

    def __init__(self, name: str = "test", start: int = 1, stride: int = 1, num_inputs: int = 1) -> None:
        super().__init__(name)
        self.inp = self.input("in")
        self.count, self.stride, self.num_inputs = start, stride, num_inputs
        self.inputs_received = 0

    @reaction(triggers="in")
    def receive(self) -> None:
        check(self.inp.value == self.count, f"Received {self.inp.value}, expected {self.count}.")
        self.count += self.stride
        self.inputs_received += 1

    @reaction(triggers="shutdown")
    def done(self) -> None:
        check(self.inputs_received == self.num_inputs,
              f"Expected to receive {self.num_inputs} inputs, but got {self.inputs_received}.")


class TestCountMultiport(Reactor):
    """lib/TestCountMultiport.lf: every channel present, counting on across channels."""

    def __init__(self, name: str = "test", start: int = 1, stride: int = 1, num_inputs: int = 1,
                 width: int = 2) -> None:
        super().__init__(name)
        self.inp = self.input_multiport("in", width)
        self.count, self.stride, self.num_inputs = start, stride, num_inputs
        self.inputs_received = 0

    @reaction(triggers="in")
    def receive(self) -> None:
        for i, port in enumerate(self.inp):
            check(port.is_present, f"No input on channel {i}.")
            check(port.value == self.count, f"Received {port.value} on channel {i}, expected {self.count}.")
            self.count += self.stride
        self.inputs_received += 1

    @reaction(triggers="shutdown")
    def done(self) -> None:
        check(self.inputs_received == self.num_inputs,
              f"Expected to receive {self.num_inputs} inputs, but only got {self.inputs_received}.")


class PassThrough(Reactor):
    """lib/PassThrough.lf."""

    def __init__(self, name: str = "pass") -> None:
        super().__init__(name)
        self.inp = self.input("in")
        self.out = self.output("out")

    @reaction(triggers="in", effects="out")
    def forward(self) -> None:
        self.out.set(self.inp.value)


class Sender(Reactor):
    """lib/LoopedActionSender.lf: ``take_a_break_after`` messages in superdense time, then a break."""

    def __init__(self, name: str = "sender", take_a_break_after: int = 10, break_interval: int = 0) -> None:
        super().__init__(name)
        self.out = self.output("out")
        self.act = self.logical_action("act")
        self.take_a_break_after, self.break_interval = take_a_break_after, break_interval
        self.sent_messages = 0

    @reaction(triggers=("startup", "act"), effects=("act", "out"))
    def send(self) -> None:
        self.out.set(self.sent_messages)
        self.sent_messages += 1
        if self.sent_messages < self.take_a_break_after:
            self.act.schedule(delay=0)
        else:
            self.sent_messages = 0
            self.act.schedule(delay=self.break_interval)


# --- modal_models/util/TraceTesting.lf ---
class TraceTesting(Reactor):
    """Checks a recorded trace: per reaction, the logical time since the last one, then presence and value
    of every channel of ``events``."""

    def __init__(self, events_size: int, trace: Sequence[int], name: str = "test") -> None:
        super().__init__(name)
        self.events = self.input_multiport("events", events_size)
        self.trace = list(trace)
        self.last_reaction_time = 0
        self.trace_idx = 0

    @reaction(triggers="startup")
    def start(self) -> None:
        self.last_reaction_time = self.logical_time

    @reaction(triggers="events")
    def record(self) -> None:
        delay = self.logical_time - self.last_reaction_time
        check(self.trace_idx < len(self.trace), "Trace Error: Current execution exceeds given trace.")
        expected = self.trace[self.trace_idx]
        self.trace_idx += 1
        check(delay == expected, f"Trace Mismatch: Unexpected reaction timing at {self.tag}. "
                                 f"(delay: {delay}, expected: {expected})")
        for i, port in enumerate(self.events):
            present, value = self.trace[self.trace_idx], self.trace[self.trace_idx + 1]
            self.trace_idx += 2
            check(int(port.is_present) == present, f"Trace Mismatch: Unexpected event presence at {self.tag}."
                                                   f" (event: {i}, presence: {port.is_present}, "
                                                   f"expected: {bool(present)})")
            check(not present or port.value == value,
                  f"Trace Mismatch: Unexpected event value at {self.tag}. (event: {i}, value: {port.value}, "
                  f"expected: {value})")
        self.last_reaction_time = self.logical_time

    @reaction(triggers="shutdown")
    def done(self) -> None:  # not in LF's TraceTesting: a trace cut short must fail too
        check(self.trace_idx == len(self.trace), f"Trace Error: only {self.trace_idx} of {len(self.trace)} "
                                                 "trace entries were seen")

