"""A reactor program lowered to plain data: what the scheduler needs and nothing of the reactor classes.

The reactor front end (``reflow.reactor``) assembles a tree of reactors into a ``Program``: the reactions
with the paths of their triggers, sources and effects; the timers, actions, modes and watchdogs; and the
connections, resolved through the hierarchy into *routes* (a value written on one port appears at the same
tag on every port it reaches, or ``after`` a delay on the far side of a delayed connection). The runtime
depends only on this, so a different front end could drive the same scheduler.

Modes (Lingua Franca's modal reactors) show up as *scopes*: every reaction, timer, action, watchdog and
connection declared inside a mode, or inside a reactor contained in one, carries the innermost mode that must
be active for it to exist (``scope``; ``None`` outside every mode). A route that passes through a connection
declared in a mode holds only while that mode is active (``scoped_routes``).

``reaction_graph`` turns a program into the reaction graph (a ``reflow.graph.Graph``): a node per reaction, an
edge from each reaction to every reaction that reads (as trigger or source) a port it writes at the same tag,
and an edge between consecutive reactions of one reactor (declaration order; reactions in two different modes
of one reactor never run at the same tag, so they are not ordered). Actions add no edge: scheduling one always
lands on a strictly later tag, so a reaction may even schedule the action that triggers it (as in Lingua
Franca). A cycle in the graph is a causality loop and a ``CausalityError`` names the reactions on it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from reflow.errors import CausalityError, CycleError
from reflow.graph import Graph, Node, Port, levels, topo_order
from reflow.runtime.executor import ReactionHost

STARTUP = "@startup"
SHUTDOWN = "@shutdown"
DEP = "dep"  # the one port of a reaction node: edges of the reaction graph are dependencies, not data
POLICIES = ("defer", "drop", "replace", "update")  # what an action does with an event that comes too soon
DEADLINE = "@deadline"  # a reaction that writes "<its name>@deadline" sets its own deadline


def scoped(scope: str | None, trigger: str) -> str:
    """The key of trigger ``STARTUP``, ``SHUTDOWN`` or ``"@reset"`` inside mode ``scope``."""
    return trigger if scope is None else f"{scope}{trigger}"


@dataclass(frozen=True)
class ReactionSpec:
    """One reaction. ``name`` is ``"<reactor path>.<method name>"``, unique in the program. ``mode`` is the
    mode of its own reactor it is declared in (``None``: at reactor level); ``scope`` the innermost mode that
    must be active for it to run (its ``mode``, else the mode its reactor sits in)."""

    name: str
    reactor: str
    index: int
    triggers: tuple[str, ...]
    sources: tuple[str, ...] = ()
    effects: tuple[str, ...] = ()
    deadline: int | None = None
    cost: float = 1e-5
    mode: str | None = None
    scope: str | None = None


@dataclass(frozen=True)
class TimerSpec:
    """A timer firing at ``offset`` and then every ``period`` ns (``period == 0``: once)."""

    key: str
    offset: int
    period: int
    scope: str | None = None


@dataclass(frozen=True)
class ActionSpec:
    """A logical or physical action with its minimum delay in ns. With ``min_spacing`` (ns), two events are at
    least that far apart, and ``policy`` (one of ``POLICIES``) says what becomes of one that comes too
    soon."""

    key: str
    min_delay: int
    physical: bool
    min_spacing: int | None = None
    policy: str = "defer"
    scope: str | None = None


@dataclass(frozen=True)
class DelayedRoute:
    """A value written on ``src`` appears on ``dst`` ``delay`` ns later (0: next microstep); a ``physical``
    connection stamps it with physical time instead (plus ``delay``)."""

    src: str
    dst: str
    delay: int
    physical: bool = False
    scope: str | None = None


@dataclass(frozen=True)
class ModeSpec:
    """A mode of reactor ``reactor``; ``scope`` is the mode the reactor itself sits in (``None``: none)."""

    key: str
    reactor: str
    initial: bool
    scope: str | None = None


@dataclass(frozen=True)
class WatchdogSpec:
    """A watchdog: started by a reaction, it fires ``timeout`` ns of physical time after that tag's time
    unless restarted or stopped first."""

    key: str
    timeout: int
    scope: str | None = None


@dataclass
class Program:
    """An assembled reactor program. ``routes[p]`` lists the ports that see, at the same tag, what is
    written on port ``p`` (transitively, not including ``p``); ``scoped_routes[p]`` the ports that see it
    only while every mode listed with them is active; ``delayed[p]`` the delayed connections leaving ``p``."""

    name: str
    reactions: list[ReactionSpec]
    timers: list[TimerSpec] = field(default_factory=list)
    actions: list[ActionSpec] = field(default_factory=list)
    routes: dict[str, tuple[str, ...]] = field(default_factory=dict)
    delayed: dict[str, tuple[DelayedRoute, ...]] = field(default_factory=dict)
    hosts: Mapping[str, ReactionHost] = field(default_factory=dict)
    modes: list[ModeSpec] = field(default_factory=list)
    watchdogs: list[WatchdogSpec] = field(default_factory=list)
    scoped_routes: dict[str, tuple[tuple[str, tuple[str, ...]], ...]] = field(default_factory=dict)

    def reaches(self, port: str) -> tuple[str, ...]:
        """``port`` and every port that sees its value at the same tag (outside modes)."""
        return (port, *self.routes.get(port, ()))

    def reaches_any(self, port: str) -> tuple[str, ...]:
        """``port`` and every port that may see its value at the same tag, in some mode."""
        return (*self.reaches(port), *(p for p, _ in self.scoped_routes.get(port, ())))


def reaction_graph(program: Program) -> Graph:
    """The reaction graph of ``program``; raises ``CausalityError`` naming the reactions on a cycle."""
    g = Graph(f"{program.name}/reactions")
    readers: dict[str, list[str]] = {}
    for r in program.reactions:
        g.add_node(Node(r.name, "reaction", (Port(DEP, required=False),), (Port(DEP),), cost=r.cost,
                        attrs={"reactor": r.reactor, "index": r.index, "triggers": r.triggers,
                               "sources": r.sources, "effects": r.effects}))
        for key in dict.fromkeys((*r.triggers, *r.sources)):
            readers.setdefault(key, []).append(r.name)
    not_ports = {a.key for a in program.actions} | {m.key for m in program.modes} | {
        w.key for w in program.watchdogs}
    _declaration_order(g, program.reactions)
    for r in program.reactions:
        for eff in r.effects:
            if eff in not_ports:
                continue
            for port in program.reaches_any(eff):
                for reader in readers.get(port, ()):
                    if reader != r.name:
                        _edge(g, r.name, reader)
                    else:
                        raise CausalityError(f"reaction {r.name} reads port {port} that it writes itself "
                                             "at the same tag; add an `after` delay or use an action",
                                             [r.name])
    try:
        topo_order(g)
    except CycleError as e:
        raise CausalityError(
            f"causality cycle among reactions: {' -> '.join([*e.cycle, e.cycle[0]])}; break it with an "
            "`after` delay on a connection or a logical action", e.cycle) from None
    return g


def _declaration_order(g: Graph, reactions: list[ReactionSpec]) -> None:
    """Edges between the reactions of each reactor in declaration order; a reaction in a mode follows the
    last one at reactor level or in the same mode, one at reactor level follows the last one of each mode."""
    last: dict[str, dict[str | None, str]] = {}  # per reactor: the latest reaction per mode since level
    for r in reactions:
        mine = last.setdefault(r.reactor, {})
        if r.mode is not None:
            before = mine.get(r.mode, mine.get(None))
            if before is not None:
                _edge(g, before, r.name)
            mine[r.mode] = r.name
            continue
        for before in mine.values():
            _edge(g, before, r.name)
        last[r.reactor] = {None: r.name}


def _edge(g: Graph, src: str, dst: str) -> None:
    """A dependency edge between reactions, through their single ``dep`` ports; no duplicates."""
    if dst not in g.successors(src):
        g.connect(src, DEP, dst, DEP)


def reaction_levels(g: Graph) -> dict[str, int]:
    """Level of each reaction: reactions on one level never depend on each other and may run in parallel."""
    return levels(g)
