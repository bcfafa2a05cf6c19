"""Topological order and levels; ties are always broken by node insertion order (deterministic)."""

from __future__ import annotations

import heapq

from reflow.errors import CycleError
from reflow.graph.graph import Graph


def topo_order(g: Graph) -> list[str]:
    """Kahn's algorithm, taking the earliest-inserted ready node first. Raises CycleError naming a cycle."""
    rank = {n: i for i, n in enumerate(g.names)}
    indeg = {n: len(g.predecessors(n)) for n in g.names}
    ready = [rank[n] for n in g.names if indeg[n] == 0]
    heapq.heapify(ready)
    names = g.names
    order: list[str] = []
    while ready:
        n = names[heapq.heappop(ready)]
        order.append(n)
        for s in g.successors(n):
            indeg[s] -= 1
            if indeg[s] == 0:
                heapq.heappush(ready, rank[s])
    if len(order) != len(g):
        cycle = find_cycle(g, [n for n in names if indeg[n] > 0])
        raise CycleError(f"graph {g.name!r} has a cycle: {' -> '.join([*cycle, cycle[0]])}", cycle)
    return order


def find_cycle(g: Graph, candidates: list[str]) -> list[str]:
    """One cycle among ``candidates`` (nodes left over by Kahn's algorithm), as a list of nodes."""
    left = set(candidates)
    start = candidates[0]
    path: list[str] = []
    seen: dict[str, int] = {}
    n = start
    while n not in seen:
        seen[n] = len(path)
        path.append(n)
        n = next(s for s in g.predecessors(n) if s in left)
    cycle = path[seen[n]:]
    cycle.reverse()
    return cycle


def levels(g: Graph) -> dict[str, int]:
    """Level of each node: 0 for sources, else 1 + max level of its predecessors."""
    lv: dict[str, int] = {}
    for n in topo_order(g):
        lv[n] = max((lv[p] + 1 for p in g.predecessors(n)), default=0)
    return lv


def level_sets(g: Graph) -> list[list[str]]:
    """Nodes grouped by level, each group in insertion order: what can run in parallel, wave by wave."""
    lv = levels(g)
    out: list[list[str]] = [[] for _ in range(max(lv.values(), default=-1) + 1)]
    for n in g.names:
        out[lv[n]].append(n)
    return out
