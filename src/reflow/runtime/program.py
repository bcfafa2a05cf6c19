"""A reactor program lowered to plain data: what the scheduler needs and nothing of the reactor classes.

The reactor front end (``reflow.reactor``) assembles a tree of reactors into a ``Program``: the reactions
with the paths of their triggers, sources and effects; the timers and actions; and the connections, resolved
through the hierarchy into *routes* (a value written on one port appears at the same tag on every port it
reaches, or ``after`` a delay on the far side of a delayed connection). The runtime depends only on this, so a
different front end could drive the same scheduler.

``reaction_graph`` turns a program into the reaction graph (a ``reflow.graph.Graph``): a node per reaction, an
edge from each reaction to every reaction that reads (as trigger or source) a port it writes at the same tag,
and an edge between consecutive reactions of one reactor (declaration order). Actions add no edge: scheduling
one always lands on a strictly later tag, so a reaction may even schedule the action that triggers it (as in
Lingua Franca). A cycle in the graph is a causality loop and a ``CausalityError`` names the reactions on it.
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


@dataclass(frozen=True)
class ReactionSpec:
    """One reaction. ``name`` is ``"<reactor path>.<method name>"``, unique in the program."""

    name: str
    reactor: str
    index: int
    triggers: tuple[str, ...]
    sources: tuple[str, ...] = ()
    effects: tuple[str, ...] = ()
    deadline: int | None = None
    cost: float = 1e-5


@dataclass(frozen=True)
class TimerSpec:
    """A timer firing at ``offset`` and then every ``period`` ns (``period == 0``: once)."""

    key: str
    offset: int
    period: int


@dataclass(frozen=True)
class ActionSpec:
    """A logical or physical action with its minimum delay in ns."""

    key: str
    min_delay: int
    physical: bool


@dataclass(frozen=True)
class DelayedRoute:
    """A value written on ``src`` appears on ``dst`` ``delay`` ns later (0: next microstep)."""

    src: str
    dst: str
    delay: int


@dataclass
class Program:
    """An assembled reactor program. ``routes[p]`` lists the ports that see, at the same tag, what is
    written on port ``p`` (transitively, not including ``p``); ``delayed[p]`` the delayed connections
    leaving ``p``."""

    name: str
    reactions: list[ReactionSpec]
    timers: list[TimerSpec] = field(default_factory=list)
    actions: list[ActionSpec] = field(default_factory=list)
    routes: dict[str, tuple[str, ...]] = field(default_factory=dict)
    delayed: dict[str, tuple[DelayedRoute, ...]] = field(default_factory=dict)
    hosts: Mapping[str, ReactionHost] = field(default_factory=dict)

    def reaches(self, port: str) -> tuple[str, ...]:
        """``port`` and every port that sees its value at the same tag."""
        return (port, *self.routes.get(port, ()))


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
    actions = {a.key for a in program.actions}
    previous: dict[str, str] = {}
    for r in program.reactions:
        before = previous.get(r.reactor)
        if before is not None:
            _edge(g, before, r.name)
        previous[r.reactor] = r.name
        for eff in r.effects:
            if eff in actions:
                continue
            for port in program.reaches(eff):
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


def _edge(g: Graph, src: str, dst: str) -> None:
    """A dependency edge between reactions, through their single ``dep`` ports; no duplicates."""
    if dst not in g.successors(src):
        g.connect(src, DEP, dst, DEP)


def reaction_levels(g: Graph) -> dict[str, int]:
    """Level of each reaction: reactions on one level never depend on each other and may run in parallel."""
    return levels(g)
