"""The deterministic scheduler: tags in order, and at each tag the triggered reactions in rank order.

Policy. Everything observable is decided by logical time, never by physical time or thread timing:

* Events (timers, actions, values crossing delayed connections) wait in a queue ordered by tag
  (``reflow.runtime.events``; an action holds one event per tag, a second one goes to the next microstep).
  The scheduler takes the earliest tag, makes all its events present at once, and runs every reaction they
  trigger before time advances.
* Within a tag, reactions run in rank order (``reflow.runtime.priority``): level by level of the reaction
  graph, except that reactions with an earlier (inferred) deadline go first. A run of ranks on one level goes
  to the executor as one batch; they cannot affect each other, so the executor may run them in parallel.
  Results are applied in batch order, which fixes the outcome: values written on ports (last write wins
  within a reactor, since its reactions are ordered), new events, mode changes, and the trace.
* Some writes are not values but requests: a mode transition, a watchdog (re)start or stop, a reaction's new
  deadline. They take effect at the end of the tag (mode transitions, ``reflow.runtime.modes``; deadlines,
  from the next tag on) or at once (watchdogs).
* Fast mode jumps from tag to tag; real-time mode first waits until physical time (since start) reaches the
  tag's time. Physical actions and physical connections get the physical time of the call (plus the minimum
  delay) as their tag, bumped to the next microstep if logical time is already past it. A watchdog that
  physical time passes before it is restarted or stopped fires at its expiry time.
* The program ends at the timeout tag, one microstep after a stop request, one microstep after the last event
  when the queue runs dry (unless ``keepalive``, by default on for programs with physical actions, keeps it
  waiting for physical events), or one microstep after a reaction raised. Shutdown reactions run at that
  final tag, together with whatever else is due then.
* Deadlines are one place where physical time shows: a reaction whose deadline has passed (physical time
  since start > tag time + deadline) when its batch is dispatched runs its deadline handler instead.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from reflow.errors import ReactionFailed, ReflowError
from reflow.graph import Graph
from reflow.runtime.events import ACTION, PORT, TIMER, EventQueue
from reflow.runtime.executor import Executor, Invocation, Result
from reflow.runtime.modes import Modes, Suspended
from reflow.runtime.priority import Ranking, ranking
from reflow.runtime.program import (
    DEADLINE,
    SHUTDOWN,
    STARTUP,
    Program,
    ReactionSpec,
    reaction_graph,
    reaction_levels,
)
from reflow.runtime.tag import Tag


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
                 trace: bool = False, keepalive: bool | None = None,
                 on_phase: Callable[[str], None] | None = None,
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
        self._levels = reaction_levels(self.graph)
        self._deadline = {r.name: r.deadline for r in program.reactions}
        self._rerank()
        self._by_trigger: dict[str, list[str]] = {}
        for r in program.reactions:
            for t in r.triggers:
                self._by_trigger.setdefault(t, []).append(r.name)
        self._reads = {r.name: tuple(dict.fromkeys((*r.triggers, *r.sources, *r.effects)))
                       for r in program.reactions}
        self._timers = {t.key: t for t in program.timers}
        self._actions = {a.key: a for a in program.actions}
        self._keepalive = any(a.physical for a in program.actions) if keepalive is None else keepalive
        self._queue = EventQueue()
        self._cond = threading.Condition()
        self._inbox: list[tuple[int, int, str, Any]] = []  # (physical ns, kind, key, value) from any thread
        self._stop_requested = False
        self._stop_handled = False
        self._stop_at = 0
        self._latest_physical = 0
        self._current = Tag(0, 0)
        self._start_ns = 0
        self.start_time = 0
        self._stop_from_reaction = False
        self._rerank_due = False
        # requests written like values: mode transitions, watchdog starts and stops, deadline updates
        self._controls: dict[str, Callable[[Tag, str, Any], None]] = {
            f"{r.name}{DEADLINE}": self._set_deadline for r in program.reactions}
        self._watchdogs = {w.key: w for w in program.watchdogs}
        self._expiry: dict[str, int] = {}  # running watchdog -> physical expiry time
        self._controls.update((w, self._watchdog) for w in self._watchdogs)
        self._modes = Modes(program) if program.modes else None
        if self._modes is not None:
            self._controls.update((m.key, self._request_mode) for m in program.modes)
            self._mark = self._mark_modal  # type: ignore[method-assign]
            self._write = self._write_modal  # type: ignore[method-assign]
        self._scope = {r.name: r.scope for r in program.reactions}
        self._scope_of: dict[str, str | None] = {t.key: t.scope for t in program.timers}
        self._scope_of.update((a.key, a.scope) for a in program.actions)
        self._scope_of.update((w.key, w.scope) for w in program.watchdogs)
        for routes in program.delayed.values():
            self._scope_of.update((d.dst, d.scope) for d in routes)

    def _rerank(self) -> None:
        self._ranking: Ranking = ranking(self.graph, self._levels, self._deadline, self._order)
        self._rank = self._ranking.rank
        self._n_ranks = len(self._ranking.level_of_rank)

    # -- thread-safe entry points ---------------------------------------------------------------------------
    def physical_time(self) -> int:
        """Physical nanoseconds since the program started."""
        return time.monotonic_ns() - self._start_ns

    def schedule_physical(self, key: str, value: Any = None, delay: int = 0) -> None:
        """Schedule physical action ``key`` from any thread; it gets the current physical time as its tag."""
        self._arrive(ACTION, key, value, self._actions[key].min_delay + delay)

    def _arrive(self, kind: int, key: str, value: Any, delay: int) -> None:
        with self._cond:
            at = self.physical_time() + delay
            self._inbox.append((at, kind, key, value))
            self._latest_physical = max(self._latest_physical, at)
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
            # wall clock at logical time zero, read first: a host's physical time (wall clock - start_time)
            self.start_time = time.time_ns()  # is then never behind the scheduler's (monotonic)
            self._start_ns = time.monotonic_ns()
            self._on_phase("running")
            try:
                final = self._loop(stats, trace)
            finally:
                self._on_phase("done")
            stats.wall_s = time.perf_counter() - wall0
            return RunResult(final, stats, trace, self.executor.measured_costs())

    def _start(self) -> None:
        queue = self._queue
        queue.push(Tag(0, 0), ACTION, STARTUP, None)
        modes = self._modes
        if modes is not None:
            for key in modes.startup_keys():
                queue.push(Tag(0, 0), ACTION, key, None)
        for t in self.program.timers:
            if modes is None or modes.is_active(t.scope):
                queue.push_timer(Tag(t.offset, 0), t.key)
            else:
                modes.suspended.append(Suspended(t.offset, TIMER, t.key, None))

    def _loop(self, stats: RunStats, trace: list[TraceEntry]) -> Tag:
        self._start()
        stop_tag = Tag(self.timeout, 0) if self.timeout is not None else None
        failure: tuple[Result, Tag] | None = None
        queue = self._queue
        while True:
            self._merge_inbox()
            if self._expiry:
                self._expire_watchdogs()
            if self._stop_requested:
                self._stop_handled = True
                asked = max(self._current.delay(0) if stats.tags else Tag(0, 0), Tag(self._stop_at, 0))
                stop_tag = asked if stop_tag is None else min(stop_tag, asked)
            nxt = queue.peek()
            if nxt is None and self._keepalive and not self._stop_requested and (
                    stop_tag is None or self.physical_time() < stop_tag.time):
                self._wait(stop_tag.time if stop_tag is not None else None)
                continue
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
            if self._modes is not None and self._modes.requests:
                self._change_modes(tag)
            if self._rerank_due:
                self._rerank()
                self._rerank_due = False
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
        for t, kind, key, value in inbox:
            tag = Tag(t, 0)
            spec = self._actions.get(key) if kind == ACTION else None
            if spec is not None and spec.min_spacing is not None:
                self._queue.push_spaced(tag, current, key, value, spec.min_spacing, spec.policy)
                continue
            if tag <= current:
                tag = current.delay(0)
            self._queue.push(tag, kind, key, value)

    def _wait(self, until: int | None) -> None:
        """Wait until physical time ``until`` (None: forever) or the next watchdog expiry, an input from
        another thread, or a stop request the loop has not seen yet."""
        if self._expiry:
            first = min(self._expiry.values())
            until = first if until is None else min(until, first)
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
        n_ranks = self._n_ranks
        pending: list[set[str]] = [set() for _ in range(n_ranks)]
        modes = self._modes
        for event in self._queue.pop_tag(tag):
            kind, key, value = event[2], event[3], event[4]
            if modes is not None and not modes.is_active(self._scope_of.get(key)):
                modes.suspended.append(Suspended(0, kind, key, value))  # arrived while its mode sleeps
                continue
            if kind == TIMER:
                period = self._timers[key].period
                if period > 0:
                    self._queue.push_timer(Tag(tag.time + period, 0), key)
            if kind == PORT:
                self._write(tag, key, value, present, pending)
            else:
                self._mark(key, value, present, pending)
        if final:
            self._mark(SHUTDOWN, None, present, pending)
            if modes is not None:
                for key in modes.shutdown_keys():
                    self._mark(key, None, present, pending)
        failure: Result | None = None
        merges = self._ranking.merges
        level_of = self._ranking.level_of_rank
        order = self._ranking.key
        for rank in range(n_ranks):
            if not pending[rank]:
                continue
            names = pending[rank]
            if merges:  # deadlines reorder levels: following ranks on the same level join this batch
                names = set(names)
                for later in range(rank + 1, n_ranks):
                    if pending[later]:
                        if level_of[later] != level_of[rank]:
                            break
                        names |= pending[later]
                        pending[later] = set()
            batch = [self._invocation(self._specs[n], tag, present, stats)
                     for n in sorted(names, key=order.__getitem__)]
            stats.batches += 1
            stats.reactions += len(batch)
            stats.max_batch = max(stats.max_batch, len(batch))
            controls = self._controls
            for res in self.executor.run_batch(batch):  # applied in batch order
                for k, value in res.writes.items():
                    control = controls.get(k)
                    if control is None:
                        self._write(tag, k, value, present, pending)
                    else:
                        control(tag, k, value)
                if res.schedules:
                    self._schedule(tag, res)
                if res.stop:
                    self._stop_from_reaction = True
                if res.error is not None and failure is None:
                    failure = res
                if self._trace_on:
                    trace.append(TraceEntry(tag, res.name, tuple(res.writes.items())))
            if failure is not None:
                break
        return failure

    def _schedule(self, tag: Tag, res: Result) -> None:
        """Queue the actions a reaction scheduled."""
        for s in res.schedules:
            spec = self._actions[s.key]
            if spec.physical:
                self.schedule_physical(s.key, s.value, s.delay)
            elif spec.min_spacing is None:
                self._queue.push(tag.delay(spec.min_delay + s.delay), ACTION, s.key, s.value)
            else:
                self._queue.push_spaced(tag.delay(spec.min_delay + s.delay), tag, s.key, s.value,
                                        spec.min_spacing, spec.policy)

    def _invocation(self, spec: ReactionSpec, tag: Tag, present: dict[str, Any],
                    stats: RunStats) -> Invocation:
        values = {k: present[k] for k in self._reads[spec.name] if k in present}
        deadline = self._deadline[spec.name]
        missed = deadline is not None and self.physical_time() > tag.time + deadline
        stats.deadline_misses += missed
        return Invocation(spec.reactor, spec.index, spec.name, tag, values, missed, self.start_time)

    def _mark(self, key: str, value: Any, present: dict[str, Any], pending: list[set[str]]) -> None:
        present[key] = value
        rank = self._rank
        for name in self._by_trigger.get(key, ()):
            pending[rank[name]].add(name)

    def _write(self, tag: Tag, key: str, value: Any, present: dict[str, Any],
               pending: list[set[str]]) -> None:
        for port in self.program.reaches(key):
            self._mark(port, value, present, pending)
            for d in self.program.delayed.get(port, ()):
                self._delay(tag, d.dst, value, d.delay, d.physical)

    def _delay(self, tag: Tag, dst: str, value: Any, delay: int, physical: bool) -> None:
        if physical:
            self._arrive(PORT, dst, value, delay)
        else:
            self._queue.push(tag.delay(delay), PORT, dst, value)

    # -- modes -----------------------------------------------------------------------------------------------
    def _mark_modal(self, key: str, value: Any, present: dict[str, Any], pending: list[set[str]]) -> None:
        """``_mark`` when the program has modes: reactions of inactive modes are not triggered (shutdown
        reactions of modes ever entered are: their triggers are marked only for those)."""
        present[key] = value
        rank, scope, modes = self._rank, self._scope, self._modes
        assert modes is not None
        anyway = key.endswith(SHUTDOWN)
        for name in self._by_trigger.get(key, ()):
            if anyway or modes.is_active(scope[name]):
                pending[rank[name]].add(name)

    def _write_modal(self, tag: Tag, key: str, value: Any, present: dict[str, Any],
                     pending: list[set[str]]) -> None:
        """``_write`` when the program has modes: connections declared in inactive modes carry nothing."""
        modes = self._modes
        assert modes is not None
        ports = [*self.program.reaches(key), *(p for p, scopes in self.program.scoped_routes.get(key, ())
                                               if all(modes.is_active(s) for s in scopes))]
        for port in ports:
            self._mark(port, value, present, pending)
            for d in self.program.delayed.get(port, ()):
                if modes.is_active(d.scope):
                    self._delay(tag, d.dst, value, d.delay, d.physical)

    def _request_mode(self, tag: Tag, key: str, kind: Any) -> None:
        assert self._modes is not None
        self._modes.request(key, str(kind))

    def _change_modes(self, tag: Tag) -> None:
        """Apply the mode transitions requested at ``tag`` to the modes and the pending events."""
        modes, queue, scope_of = self._modes, self._queue, self._scope_of
        assert modes is not None
        reset, fire = modes.transition()
        asleep = queue.take(lambda e: modes.is_active(scope_of.get(e[3])))
        modes.suspended.extend(Suspended(e[0].time - tag.time, e[2], e[3], e[4]) for e in asleep)
        if reset:  # a reset discards the events inside the mode it enters and restarts its timers
            queue.take(lambda e: not modes.inside(scope_of.get(e[3]), reset))
            modes.suspended = [s for s in modes.suspended if not modes.inside(scope_of.get(s.key), reset)]
            for t in self.program.timers:
                if modes.inside(t.scope, reset):
                    if modes.is_active(t.scope):
                        queue.push_timer(tag.delay(t.offset), t.key)
                    else:
                        modes.suspended.append(Suspended(t.offset, TIMER, t.key, None))
        for due, s in modes.resume(tag, scope_of):
            if s.kind == TIMER:
                queue.push_timer(due, s.key)
            else:
                queue.push(due, s.kind, s.key, s.value)
        for key in fire:
            queue.push(tag.delay(0), ACTION, key, None)

    # -- watchdogs and deadlines -----------------------------------------------------------------------------
    def _watchdog(self, tag: Tag, key: str, extra: Any) -> None:
        """A reaction started (``extra``: ns on top of the timeout) or stopped (``None``) watchdog ``key``."""
        if extra is None:
            self._expiry.pop(key, None)
        else:
            self._expiry[key] = tag.time + self._watchdogs[key].timeout + int(extra)

    def _expire_watchdogs(self) -> None:
        now = self.physical_time()
        for key, expiry in sorted(self._expiry.items(), key=lambda kv: (kv[1], kv[0])):
            if expiry <= now:
                del self._expiry[key]
                tag = Tag(expiry, 0)
                if tag <= self._current:
                    tag = self._current.delay(0)
                self._queue.push(tag, ACTION, key, None)

    def _set_deadline(self, tag: Tag, key: str, deadline: Any) -> None:
        name = key[: -len(DEADLINE)]
        if self._deadline[name] != deadline:
            self._deadline[name] = int(deadline)
            self._rerank_due = True


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
