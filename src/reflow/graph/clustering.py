"""Clusterings: which nodes share a sequential worker, and in which order they run there.

Linear clustering (Kim and Browne) is the policy: the heaviest path, counting node costs and the comm costs
of its edges, is put on one worker so that none of those transfers is paid; then the heaviest path among
what is left, and so on. Each cluster is a chain of dependencies, so the result has as many clusters as the
graph is "wide"; ``merge.merge_clusters`` then folds them onto the workers there actually are.

Every cluster is kept in the order of one global topological order, which makes any clustering deadlock-
free.
"""

from __future__ import annotations

from dataclasses import dataclass

from reflow.errors import GraphError
from reflow.graph.cost import NO_COMM, CommModel
from reflow.graph.critical_path import heaviest_path
from reflow.graph.graph import Graph
from reflow.graph.order import topo_order


@dataclass(frozen=True)
class Clustering:
    """Clusters of node names; each cluster is the run order of one worker."""

    clusters: tuple[tuple[str, ...], ...]

    def cluster_of(self, name: str) -> int:
        for i, c in enumerate(self.clusters):
            if name in c:
                return i
        raise GraphError(f"node {name!r} is in no cluster of this clustering")

    def index(self) -> dict[str, int]:
        """Node name -> cluster index, for callers that look up many nodes."""
        return {n: i for i, c in enumerate(self.clusters) for n in c}

    def __len__(self) -> int:
        return len(self.clusters)

    def check(self, g: Graph) -> None:
        """Raise GraphError unless every node of ``g`` is in exactly one cluster (and no unknown name)."""
        seen: dict[str, int] = {}
        for i, c in enumerate(self.clusters):
            for n in c:
                if n not in g:
                    raise GraphError(f"cluster {i} names {n!r}, which is not a node of graph {g.name!r}")
                if n in seen:
                    raise GraphError(f"node {n!r} is in clusters {seen[n]} and {i}; put it in exactly one")
                seen[n] = i
        for n in g.names:
            if n not in seen:
                raise GraphError(f"node {n!r} of graph {g.name!r} is in no cluster; every node needs one")


def in_topo_order(g: Graph, names: list[str] | tuple[str, ...], rank: dict[str, int] | None = None) \
        -> tuple[str, ...]:
    """``names`` sorted by ``g``'s topological order."""
    r = rank if rank is not None else {n: i for i, n in enumerate(topo_order(g))}
    return tuple(sorted(names, key=r.__getitem__))


def single_cluster(g: Graph) -> Clustering:
    """Everything on one worker, in topological order."""
    return Clustering((tuple(topo_order(g)),) if len(g) else ())


def singleton_clusters(g: Graph) -> Clustering:
    """One worker per node, in topological order."""
    return Clustering(tuple((n,) for n in topo_order(g)))


def linear_clustering(g: Graph, comm: CommModel = NO_COMM) -> Clustering:
    """Peel off the heaviest remaining path as a cluster until none is left (first: the critical path)."""
    rank = {n: i for i, n in enumerate(topo_order(g))}
    left = g
    clusters: list[tuple[str, ...]] = []
    while len(left):
        path, _ = heaviest_path(left, comm)
        clusters.append(in_topo_order(g, path, rank))
        left = left.without(path)
    return Clustering(tuple(clusters))
