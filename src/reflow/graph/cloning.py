"""Cloning cheap shared nodes into the clusters that consume them.

When a cheap node feeds several workers, each of those workers waits for its result to travel; recomputing
it locally can be faster. The policy is greedy and conservative: in topological order, each pure node of
cost at most ``max_cost`` with consumers in other clusters is tried as a clone in each such cluster, and a
clone is kept only if the simulated makespan strictly drops. The original always keeps at least one consumer
(or its own cluster's), so the graph's sinks and outputs are unchanged, and results are identical under the
interpreter.
"""

from __future__ import annotations

from dataclasses import replace

from reflow.graph.clustering import Clustering, in_topo_order
from reflow.graph.cost import NO_COMM, CommModel
from reflow.graph.graph import Graph
from reflow.graph.simulate import simulate

NEVER_CLONED = frozenset({"input", "output", "reaction"})


def clonable(g: Graph, name: str, max_cost: float) -> bool:
    node = g.node(name)
    return (node.cost <= max_cost and node.op not in NEVER_CLONED
            and not node.attrs.get("side_effect") and not node.attrs.get("impure"))


def with_clone(g: Graph, clustering: Clustering, name: str, target: int) -> tuple[Graph, Clustering]:
    """``name`` duplicated into cluster ``target``, taking over the edges to that cluster's consumers."""
    where = clustering.index()
    clone = f"{name}@{target}"
    out = Graph(g.name)
    for node in g:
        out.add_node(node)
    node = g.node(name)
    origin = node.attrs.get("clone_of", name)
    out.add_node(replace(node, name=clone, attrs={**node.attrs, "clone_of": origin}))
    for e in g.edges:
        if e.src == name and where[e.dst] == target:
            out.connect(clone, e.src_port, e.dst, e.dst_port, e.size)
        else:
            out.connect(e.src, e.src_port, e.dst, e.dst_port, e.size)
    for e in g.in_edges(name):
        out.connect(e.src, e.src_port, clone, e.dst_port, e.size)
    clusters = list(clustering.clusters)
    clusters[target] = clusters[target] + (clone,)
    from reflow.graph.order import topo_order

    rank = {n: i for i, n in enumerate(topo_order(out))}
    return out, Clustering(tuple(in_topo_order(out, c, rank) for c in clusters))


def clone_shared_nodes(g: Graph, clustering: Clustering, max_cost: float, comm: CommModel = NO_COMM) \
        -> tuple[Graph, Clustering]:
    """Clone cheap nodes whose outputs feed several clusters, keeping only clones that lower the makespan."""
    clustering.check(g)
    original = g.names

    def score(graph: Graph, c: Clustering) -> tuple[float, float]:
        sched = simulate(graph, c, comm)
        return sched.makespan, sum(sched.finish[n] for n in original)

    best = score(g, clustering)
    for name in in_topo_order(g, g.names):
        if not clonable(g, name, max_cost):
            continue
        home = clustering.index()[name]
        for target in sorted({clustering.index()[s] for s in g.successors(name)} - {home}):
            left = [e for e in g.out_edges(name) if clustering.index()[e.dst] != target]
            if not left:
                continue  # the original must keep a consumer so the graph's sinks do not change
            cand_g, cand_c = with_clone(g, clustering, name, target)
            span = score(cand_g, cand_c)
            if span[0] <= best[0] and span[1] < best[1]:
                g, clustering, best = cand_g, cand_c, span
    return g.copy(), clustering
