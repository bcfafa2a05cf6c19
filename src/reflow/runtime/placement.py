"""Placement: which worker process keeps which reactor.

Policy. A reactor's state lives in exactly one process, so placement works on reactors, not reactions: a
reactor's cost is the sum of the costs of its reactions in the reaction graph (declared, or measured and fed
back with ``Graph.with_costs``). Reactors are placed largest first, each onto the least loaded worker
(longest-processing-time-first, within 4/3 of the best balance); ties go to the lower reactor path and the
lower worker index, so a placement is a pure function of the graph and the worker count. Reactors named in
``local`` stay in the scheduler's process (worker ``-1``): this is how a program mixes threads and processes.

The brief asks for the graph passes ``reflow.graph.clustering.linear_clustering`` and
``reflow.graph.merge.merge_clusters`` here (clustering along critical paths cuts messages between workers);
they did not exist when this was written, so this balances cost only. Placement never changes results, only
where reactions run: the scheduler's determinism does not depend on it.
"""

from __future__ import annotations

from collections.abc import Collection

from reflow.graph import Graph

LOCAL = -1


def reactor_costs(graph: Graph) -> dict[str, float]:
    """Sum of reaction costs per reactor path (``attrs["reactor"]`` of each reaction node)."""
    costs: dict[str, float] = {}
    for node in graph:
        path = str(node.attrs["reactor"])
        costs[path] = costs.get(path, 0.0) + node.cost
    return costs


def place(graph: Graph, workers: int, local: Collection[str] = ()) -> dict[str, int]:
    """Map every reactor of ``graph`` to a worker index in ``range(workers)``, or ``LOCAL``."""
    if workers < 1:
        raise ValueError(f"placement needs at least 1 worker process, got {workers}")
    costs = reactor_costs(graph)
    unknown = sorted(set(local) - set(costs))
    if unknown:
        raise ValueError(f"reactors {unknown} asked to stay local are not in the program; "
                         f"its reactors are {sorted(costs)}")
    load = [0.0] * workers
    out = {path: LOCAL for path in local}
    for path in sorted((p for p in costs if p not in out), key=lambda p: (-costs[p], p)):
        w = min(range(workers), key=lambda i: (load[i], i))
        out[path] = w
        load[w] += costs[path]
    return out
