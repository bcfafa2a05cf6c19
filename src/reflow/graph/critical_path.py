"""Top levels, bottom levels and the critical path: the lower bound on any schedule's makespan.

Between two nodes joined by several edges the slowest edge counts (see ``cost.pair_cost``). Ties are broken
by node insertion order, so the critical path is deterministic.
"""

from __future__ import annotations

from reflow.graph.cost import NO_COMM, CommModel, pair_cost
from reflow.graph.graph import Graph
from reflow.graph.order import topo_order


def top_levels(g: Graph, comm: CommModel = NO_COMM) -> dict[str, float]:
    """Earliest start time of each node with unlimited workers, every edge paying ``comm``."""
    top: dict[str, float] = {}
    for n in topo_order(g):
        top[n] = max((top[p] + g.node(p).cost + pair_cost(g, p, n, comm) for p in g.predecessors(n)),
                     default=0.0)
    return {n: top[n] for n in g.names}


def bottom_levels(g: Graph, comm: CommModel = NO_COMM) -> dict[str, float]:
    """Length of the heaviest path from each node (its own cost included) to a sink."""
    bottom: dict[str, float] = {}
    for n in reversed(topo_order(g)):
        bottom[n] = g.node(n).cost + max(
            (pair_cost(g, n, s, comm) + bottom[s] for s in g.successors(n)), default=0.0)
    return {n: bottom[n] for n in g.names}


def heaviest_path(g: Graph, comm: CommModel = NO_COMM) -> tuple[list[str], float]:
    """The heaviest path in ``g``; ties go to the earliest-inserted node at every step."""
    if len(g) == 0:
        return [], 0.0
    bottom = bottom_levels(g, comm)
    start = max(g.sources(), key=lambda n: bottom[n])  # max keeps the first of equals
    path = [start]
    n = start
    while g.successors(n):
        n = max(g.successors(n), key=lambda s, n=n: pair_cost(g, n, s, comm) + bottom[s])  # type: ignore[misc]
        path.append(n)
    return path, bottom[start]


def critical_path(g: Graph, comm: CommModel = NO_COMM) -> tuple[list[str], float]:
    """The heaviest source-to-sink path (node costs plus comm costs) and its length."""
    return heaviest_path(g, comm)
