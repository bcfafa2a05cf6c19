"""Simulate a clustering: each cluster is one sequential worker running its nodes in the cluster's order.

A node starts when its worker is free and all its inputs have arrived; an edge between clusters pays the
comm model's cost, an edge inside one is free. This is the makespan every other pass optimises, so it is
exact for the model and cheap: one sweep over nodes and edges.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass

from reflow.errors import GraphError
from reflow.graph.clustering import Clustering
from reflow.graph.cost import NO_COMM, CommModel
from reflow.graph.graph import Graph


@dataclass(frozen=True)
class Schedule:
    """Start and finish time of every node, and the time the last one finishes."""

    makespan: float
    start: Mapping[str, float]
    finish: Mapping[str, float]


def simulate(g: Graph, clustering: Clustering, comm: CommModel = NO_COMM) -> Schedule:
    """Run the clustering in simulated time. Raises GraphError if the cluster orders deadlock."""
    clustering.check(g)
    where = clustering.index()
    waiting = {n: len(g.predecessors(n)) for n in g.names}
    nxt = [0] * len(clustering.clusters)
    free = [0.0] * len(clustering.clusters)
    start: dict[str, float] = {}
    finish: dict[str, float] = {}
    ready = deque(i for i, c in enumerate(clustering.clusters) if c and waiting[c[0]] == 0)
    while ready:
        i = ready.popleft()
        cluster = clustering.clusters[i]
        while nxt[i] < len(cluster) and waiting[cluster[nxt[i]]] == 0:
            n = cluster[nxt[i]]
            arrive = free[i]
            for e in g.in_edges(n):
                t = finish[e.src] + (comm.edge_cost(e) if where[e.src] != i else 0.0)
                arrive = max(arrive, t)
            start[n] = arrive
            finish[n] = free[i] = arrive + g.node(n).cost
            nxt[i] += 1
            for s in g.successors(n):
                waiting[s] -= 1
                j = where[s]
                if j != i and waiting[s] == 0 and clustering.clusters[j][nxt[j]] == s:
                    ready.append(j)
    if len(finish) != len(g):
        stuck = [(c[nxt[i]], i) for i, c in enumerate(clustering.clusters) if nxt[i] < len(c)]
        detail = ", ".join(f"{n!r} (cluster {i}) waits for "
                           f"{[p for p in g.predecessors(n) if p not in finish]}" for n, i in stuck)
        raise GraphError(f"the cluster orders of graph {g.name!r} deadlock: {detail}; "
                         "order each cluster topologically")
    return Schedule(max(finish.values(), default=0.0), start, finish)
