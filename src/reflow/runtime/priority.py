"""Deadline-based priority: earliest (inferred) deadline first among the reactions ready at one tag.

Policy, after Lingua Franca's GEDF scheduler (its tests DeadlinePriority and DeadlineWithBanks). A reaction's
*inferred deadline* is the smallest deadline among itself and every reaction downstream of it in the reaction
graph (``inf`` when there is none), so the work that feeds a reaction with a deadline is urgent too. Each
reaction gets a *rank*: reactions sorted by ``(inferred deadline, level)``. Along every edge both grow, so
rank order is a topological order, and the scheduler may run the triggered reactions of a tag in rank order,
dispatching as one batch a run of consecutive ranks on the same level (which never depend on each other),
ordered inside the batch by rank and then program order. Without any deadline the ranks are the levels, and
this is exactly level-by-level execution. Everything here is a function of the graph and the current
deadlines, so the order is deterministic; deadlines updated at run time change it from the next tag on.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from reflow.graph import Graph, topo_order


def inferred_deadlines(graph: Graph, deadlines: Mapping[str, int | None]) -> dict[str, float]:
    """Per reaction, the smallest deadline among itself and all reactions downstream of it (``inf``: none)."""
    out: dict[str, float] = {}
    for name in reversed(topo_order(graph)):
        own = deadlines.get(name)
        out[name] = min((out[s] for s in graph.successors(name)), default=math.inf)
        if own is not None:
            out[name] = min(out[name], own)
    return out


@dataclass(frozen=True)
class Ranking:
    """``rank[name]``; ``level_of_rank[rank]``; ``key[name]``, the sort key of a reaction within a batch."""

    rank: dict[str, int]
    level_of_rank: list[int]
    key: dict[str, int]

    @property
    def merges(self) -> bool:
        """Whether two ranks share a level (some deadline reorders the levels)."""
        return len(set(self.level_of_rank)) != len(self.level_of_rank)


def ranking(graph: Graph, levels: Mapping[str, int], deadlines: Mapping[str, int | None],
            order: Mapping[str, int]) -> Ranking:
    """The ranks of the reactions (see the module docstring); ``order`` is their program order."""
    inferred = inferred_deadlines(graph, deadlines) if any(d is not None for d in deadlines.values()) else {}
    pairs = sorted({(inferred.get(n, math.inf), levels[n]) for n in levels})
    index = {p: i for i, p in enumerate(pairs)}
    rank = {n: index[(inferred.get(n, math.inf), levels[n])] for n in levels}
    n = len(order) + 1
    return Ranking(rank, [lv for _, lv in pairs], {name: rank[name] * n + order[name] for name in levels})
