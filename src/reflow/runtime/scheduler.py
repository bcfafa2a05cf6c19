"""The deterministic scheduler: tags in order, and at each tag the reaction graph level by level.

Policy. Everything observable is decided by logical time, never by physical time or thread timing:

* Events (timers, actions, values crossing delayed connections) wait in a queue ordered by ``(tag, seq)``,
  ``seq`` being the order in which they were scheduled. The scheduler takes the earliest tag, makes all its
  events present at once, and runs every reaction they trigger before time advances. An action (or a delayed
  connection) holds at most one event per tag: a second event for the same tag goes to the next free
  microstep, so two schedules of one action are delivered one after the other (as in Lingua Franca).
* Within a tag, reactions run level by level (levels of the reaction graph). A level's triggered reactions go
  to the executor as one batch; they cannot affect each other, so the executor may run them in parallel.
  Results are applied in batch order (the reactions' program order), which fixes the outcome: values written
  on ports (last write wins within a reactor, since its reactions are ordered), new events, and the trace.
* Fast mode jumps from tag to tag; real-time mode first waits until physical time (since start) reaches the
  tag's time. Physical actions, scheduled from other threads, get the physical time of the call (plus the
  action's minimum delay) as their tag, bumped to the next microstep if logical time is already past it.
* The program ends at the timeout tag, one microstep after a stop request, one microstep after the last event
  when the queue runs dry (unless physical actions keep it alive), or one microstep after a reaction raised.
  Shutdown reactions run at that final tag, together with whatever else is due then.
* Deadlines are the one place where physical time shows: a reaction whose deadline has passed (physical time
  since start > tag time + deadline) when its level is dispatched runs its deadline handler instead.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from reflow.errors import ReactionFailed, ReflowError
from reflow.graph import Graph
from reflow.runtime.executor import Executor, Invocation, Result
from reflow.runtime.program import SHUTDOWN, STARTUP, Program, ReactionSpec, reaction_graph, reaction_levels
from reflow.runtime.tag import Tag

_TIMER, _ACTION, _PORT = 0, 1, 2


@dataclass(frozen=True)
class TraceEntry:
    """One reaction run: at which tag, and what it wrote (port path, value) in write order."""

    tag: Tag
    reaction: str
    writes: tuple[tuple[str, Any], ...] = ()


@dataclass
class RunStats:
    """Counters of one run. ``max_batch`` is the widest batch handed to the executor."""

    tags: int = 0
    reactions: int = 0
    batches: int = 0
    max_batch: int = 0
    deadline_misses: int = 0
    wall_s: float = 0.0


@dataclass
class RunResult:
    """What a run returns: the last tag, counters, the trace (if asked for) and measured reaction costs."""

    final_tag: Tag
    stats: RunStats
    trace: list[TraceEntry] = field(default_factory=list)
    costs: dict[str, float] = field(default_factory=dict)


class Scheduler:
    """Runs one ``Program`` once on one ``Executor`` (which it closes on every exit path)."""

    def __init__(self, program: Program, executor: Executor, *, fast: bool = True, timeout: int | None = None,
                 trace: bool = False, on_phase: Callable[[str], None] | None = None,
                 on_tag: Callable[[Tag], None] | None = None) -> None:
        self.program = program
        self.graph: Graph = reaction_graph(program)
        self.executor = executor
        self.fast = fast
        self.timeout = timeout
        self._trace_on = trace
        self._on_phase = on_phase or (lambda phase: None)
        self._on_tag = on_tag  # called after each tag, e.g. to drive a progress bar
        self._specs = {r.name: r for r in program.reactions}
        self._order = {r.name: i for i, r in enumerate(program.reactions)}
        lv = reaction_levels(self.graph)
        self._level = {r.name: lv[r.name] for r in program.reactions}
        self._n_levels = max(lv.values(), default=-1) + 1
        self._by_trigger: dict[str, list[str]] = {}
        for r in program.reactions:
            for t in r.triggers:
                self._by_trigger.setdefault(t, []).append(r.name)
        self._reads = {r.name: tuple(dict.fromkeys((*r.triggers, *r.sources, *r.effects)))
                       for r in program.reactions}
        self._timers = {t.key: t for t in program.timers}
        self._actions = {a.key: a for a in program.actions}
        self._keepalive = any(a.physical for a in program.actions)
        self._queue: list[tuple[Tag, int, int, str, Any]] = []
        self._taken: set[tuple[str, Tag]] = set()  # (action or port, tag) of every queued action/port event
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._inbox: list[tuple[int, str, Any]] = []
        self._stop_requested = False
        self._stop_handled = False
        self._stop_at = 0
        self._latest_physical = 0
        self._current = Tag(0, 0)
        self._start_ns = 0
        self.start_time = 0
        self._stop_from_reaction = False

    # -- thread-safe entry points ---------------------------------------------------------------------------
    def physical_time(self) -> int:
        """Physical nanoseconds since the program started."""
        return time.monotonic_ns() - self._start_ns

    def schedule_physical(self, key: str, value: Any = None, delay: int = 0) -> None:
        """Schedule physical action ``key`` from any thread; it gets the current physical time as its tag."""
        with self._cond:
            at = self.physical_time() + delay
            self._inbox.append((at, key, value))
            self._latest_physical = max(self._latest_physical, at + self._actions[key].min_delay)
            self._cond.notify_all()

    def request_stop(self) -> None:
        """Ask the program to stop (from any thread). Shutdown runs one microstep after the current tag, or
        at the physical time of the request if that is later, so that physical actions scheduled before the
        request (whose tags may lie a minimum delay ahead) are still processed."""
        with self._cond:
            if not self._stop_requested:
                self._stop_requested = True
                self._stop_at = max(self.physical_time(), self._latest_physical)
            self._cond.notify_all()

    # -- the loop --------------------------------------------------------------------------------------------
    def run(self) -> RunResult:
        stats = RunStats()
        trace: list[TraceEntry] = []
        wall0 = time.perf_counter()
        with self.executor:
            self.executor.start(self.program.hosts, self.graph)
            self.start_time = time.time_ns()  # wall clock at logical time zero, read first: a host's
            self._start_ns = time.monotonic_ns()  # physical time (wall clock - start_time) is never behind ours
            self._on_phase("running")
            try:
                final = self._loop(stats, trace)
            finally:
                self._on_phase("done")
            stats.wall_s = time.perf_counter() - wall0
            return RunResult(final, stats, trace, self.executor.measured_costs())

    def _push(self, tag: Tag, kind: int, key: str, value: Any) -> None:
        heapq.heappush(self._queue, (tag, next(self._seq), kind, key, value))

    def _push_event(self, tag: Tag, kind: int, key: str, value: Any) -> None:
        """Queue an action or delayed-port event at ``tag``, or at the next microstep ``key`` is free."""
        while (key, tag) in self._taken:
            tag = Tag(tag.time, tag.microstep + 1)
        self._taken.add((key, tag))
        heapq.heappush(self._queue, (tag, next(self._seq), kind, key, value))

    def _loop(self, stats: RunStats, trace: list[TraceEntry]) -> Tag:
        self._push(Tag(0, 0), _ACTION, STARTUP, None)
        for t in self.program.timers:
            self._push(Tag(t.offset, 0), _TIMER, t.key, None)
        stop_tag = Tag(self.timeout, 0) if self.timeout is not None else None
        failure: tuple[Result, Tag] | None = None
        while True:
            self._merge_inbox()
            if self._stop_requested:
                self._stop_handled = True
                asked = max(self._current.delay(0) if stats.tags else Tag(0, 0), Tag(self._stop_at, 0))
                stop_tag = asked if stop_tag is None else min(stop_tag, asked)
            if not self._queue and self._keepalive and not self._stop_requested and (
                    stop_tag is None or self.physical_time() < stop_tag.time):
                self._wait(stop_tag.time if stop_tag is not None else None)
                continue
            nxt = self._queue[0][0] if self._queue else None
            if nxt is None and (stop_tag is None or not self._keepalive):  # nothing left to do
                last = self._current.delay(0) if stats.tags else Tag(0, 0)
                stop_tag = last if stop_tag is None else min(stop_tag, last)
            assert stop_tag is not None or nxt is not None
            tag = nxt if nxt is not None and (stop_tag is None or nxt <= stop_tag) else stop_tag
            assert tag is not None
            if not self.fast and self.physical_time() < tag.time:
                self._wait(tag.time)
                continue
            with self._cond:
                self._current = tag
            final = tag == stop_tag
            if final:
                self._on_phase("shutdown")
            failed = self._run_tag(tag, final, stats, trace)
            if self._on_tag is not None:
                self._on_tag(tag)
            if failed is not None and failure is None:
                failure = (failed, tag)
            if final:
                break
            if failure is not None:
                stop_tag = tag.delay(0)
            if self._stop_from_reaction and (stop_tag is None or stop_tag > tag.delay(0)):
                stop_tag = tag.delay(0)
        if failure is not None:
            raise _failure(*failure)
        return tag

    def _merge_inbox(self) -> None:
        with self._cond:
            inbox, self._inbox = self._inbox, []
            current = self._current
        for t, key, value in inbox:
            tag = Tag(t + self._actions[key].min_delay, 0)
            if tag <= current:
                tag = current.delay(0)
            self._push_event(tag, _ACTION, key, value)

    def _wait(self, until: int | None) -> None:
        """Wait until physical time ``until`` (None: forever), an input from another thread, or a stop
        request the loop has not seen yet."""
        with self._cond:
            while not self._inbox and not (self._stop_requested and not self._stop_handled):
                if until is None:
                    self._cond.wait()
                    continue
                left = until - self.physical_time()
                if left <= 0:
                    return
                self._cond.wait(left / 1e9)

    # -- one tag ---------------------------------------------------------------------------------------------
    def _run_tag(self, tag: Tag, final: bool, stats: RunStats, trace: list[TraceEntry]) -> Result | None:
        stats.tags += 1
        self._stop_from_reaction = False
        present: dict[str, Any] = {}
        pending: list[set[str]] = [set() for _ in range(self._n_levels)]
        while self._queue and self._queue[0][0] == tag:
            _, _, kind, key, value = heapq.heappop(self._queue)
            if kind == _TIMER:
                period = self._timers[key].period
                if period > 0:
                    self._push(Tag(tag.time + period, 0), _TIMER, key, None)
            else:
                self._taken.discard((key, tag))
            if kind == _PORT:
                self._write(tag, key, value, present, pending)
            else:
                self._mark(key, value, present, pending)
        if final:
            self._mark(SHUTDOWN, None, present, pending)
        failure: Result | None = None
        for level in range(self._n_levels):
            if not pending[level]:
                continue
            names = sorted(pending[level], key=self._order.__getitem__)
            batch = [self._invocation(self._specs[n], tag, present, stats) for n in names]
            stats.batches += 1
            stats.reactions += len(batch)
            stats.max_batch = max(stats.max_batch, len(batch))
            results = self.executor.run_batch(batch)
            for res in results:
                for key, value in res.writes.items():
                    self._write(tag, key, value, present, pending)
                for s in res.schedules:
                    spec = self._actions[s.key]
                    if spec.physical:
                        self.schedule_physical(s.key, s.value, s.delay)
                    else:
                        self._push_event(tag.delay(spec.min_delay + s.delay), _ACTION, s.key, s.value)
                if res.stop:
                    self._stop_from_reaction = True
                if res.error is not None and failure is None:
                    failure = res
                if self._trace_on:
                    trace.append(TraceEntry(tag, res.name, tuple(res.writes.items())))
            if failure is not None:
                break
        return failure

    def _invocation(self, spec: ReactionSpec, tag: Tag, present: dict[str, Any],
                    stats: RunStats) -> Invocation:
        values = {k: present[k] for k in self._reads[spec.name] if k in present}
        missed = spec.deadline is not None and self.physical_time() > tag.time + spec.deadline
        stats.deadline_misses += missed
        return Invocation(spec.reactor, spec.index, spec.name, tag, values, missed, self.start_time)

    def _mark(self, key: str, value: Any, present: dict[str, Any], pending: list[set[str]]) -> None:
        present[key] = value
        for name in self._by_trigger.get(key, ()):
            pending[self._level[name]].add(name)

    def _write(self, tag: Tag, key: str, value: Any, present: dict[str, Any],
               pending: list[set[str]]) -> None:
        for port in self.program.reaches(key):
            self._mark(port, value, present, pending)
            for d in self.program.delayed.get(port, ()):
                self._push_event(tag.delay(d.delay), _PORT, d.dst, value)


def _failure(res: Result, tag: Tag) -> ReflowError:
    """The error a failed reaction ends the run with: API misuse keeps its own class, the rest is wrapped."""
    err = res.error
    if isinstance(err, ReflowError) and not isinstance(err, ReactionFailed):
        return err
    detail = f"{type(err).__name__}: {err}" if err is not None else "unknown error"
    out = ReactionFailed(f"reaction {res.name} of reactor {res.reactor} raised at tag {tag}: {detail} "
                         "(shutdown reactions have run)\n" + res.error_text, res.reactor, res.name, tag)
    out.__cause__ = err
    return out
