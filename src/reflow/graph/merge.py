"""Merging clusters onto a fixed number of workers.

Greedy, as in Sarkar's and Yang-Gerasoulis' cluster merging: while there are more clusters than workers,
take the lightest cluster (ties: the later one) and merge it into the candidate cluster that gives the
lowest simulated makespan (ties: the lower index). Trying every pair is quadratic in clusters per step;
instead the candidates are the clusters the lightest one exchanges data with plus the few least-loaded ones,
which keeps it fast on graphs of ~1000 nodes and ~100 clusters while still seeing the choices that matter.
Greedy merging can strand work on too few workers, so the result is also compared with earliest-finish-time
list scheduling (HEFT's placement) and the one with the shorter simulated makespan is returned.
"""

from __future__ import annotations

from reflow.errors import GraphError
from reflow.graph.clustering import Clustering, in_topo_order
from reflow.graph.cost import NO_COMM, CommModel
from reflow.graph.critical_path import bottom_levels
from reflow.graph.graph import Graph
from reflow.graph.order import topo_order
from reflow.graph.simulate import simulate

LEAST_LOADED = 4


def merged(g: Graph, clusters: list[tuple[str, ...]], i: int, j: int, rank: dict[str, int]) \
        -> list[tuple[str, ...]]:
    """``clusters`` with cluster ``i`` merged into cluster ``j`` (which keeps its place)."""
    out = list(clusters)
    out[j] = in_topo_order(g, clusters[i] + clusters[j], rank)
    del out[i]
    return out


def merge_clusters(g: Graph, clustering: Clustering, workers: int, comm: CommModel = NO_COMM) -> Clustering:
    """Merge down to at most ``workers`` clusters, greedily by simulated makespan."""
    if workers < 1:
        raise GraphError(f"merge_clusters needs at least 1 worker, got {workers}")
    clustering.check(g)
    rank = {n: i for i, n in enumerate(topo_order(g))}
    clusters = [c for c in clustering.clusters if c]
    while len(clusters) > workers:
        load = [sum(g.node(n).cost for n in c) for c in clusters]
        i = min(range(len(clusters)), key=lambda k: (load[k], -k))
        where = {n: k for k, c in enumerate(clusters) for n in c}
        talks = {where[m] for n in clusters[i] for m in g.predecessors(n) + g.successors(n)}
        lightest = sorted((k for k in range(len(clusters)) if k != i), key=lambda k: (load[k], k))
        candidates = sorted((talks - {i}) | set(lightest[:LEAST_LOADED]))
        best: tuple[float, int] | None = None
        for j in candidates:
            trial = merged(g, clusters, i, j, rank)
            span = simulate(g, Clustering(tuple(trial)), comm).makespan
            if best is None or span < best[0]:
                best = (span, j)
        assert best is not None
        clusters = merged(g, clusters, i, best[1], rank)
    greedy = Clustering(tuple(clusters))
    if len(clustering) <= workers:
        return greedy
    listed = list_schedule(g, workers, comm)
    return listed if simulate(g, listed, comm).makespan < simulate(g, greedy, comm).makespan else greedy


def list_schedule(g: Graph, workers: int, comm: CommModel = NO_COMM) -> Clustering:
    """Earliest-finish-time list scheduling (HEFT's placement step) onto ``workers`` sequential workers.

    Nodes are taken by decreasing bottom level (ties: topological order, so the order stays topological even
    with zero costs) and each goes to the worker where it would finish first.
    """
    order = topo_order(g)
    bottom = bottom_levels(g, comm)
    order.sort(key=lambda n: -bottom[n])  # stable: topological among equal bottom levels
    free = [0.0] * workers
    where: dict[str, int] = {}
    finish: dict[str, float] = {}
    placed: list[list[str]] = [[] for _ in range(workers)]
    for n in order:
        cost = g.node(n).cost
        best: tuple[float, int] | None = None
        for w in range(workers):
            ready = max([free[w]] + [finish[e.src] + (comm.edge_cost(e) if where[e.src] != w else 0.0)
                                     for e in g.in_edges(n)])
            if best is None or ready + cost < best[0]:
                best = (ready + cost, w)
        assert best is not None
        finish[n], w = best
        free[w], where[n] = finish[n], w
        placed[w].append(n)
    return Clustering(tuple(tuple(c) for c in placed if c))
