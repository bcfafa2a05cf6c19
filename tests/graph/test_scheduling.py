"""Critical path, clustering, simulation, merging and cloning."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import dags, inc, inputs_for

from reflow.errors import GraphError
from reflow.graph import (
    Clustering,
    CommModel,
    Edge,
    Graph,
    bottom_levels,
    clone_shared_nodes,
    critical_path,
    evaluate,
    linear_clustering,
    merge_clusters,
    simulate,
    single_cluster,
    singleton_clusters,
    top_levels,
    topo_order,
)
from reflow.graph.verify import fingerprint

EPS = 1e-9


def fork_join() -> Graph:
    """x -> a(1), b(3), c(2) -> j(1); edges of 100 bytes."""
    g = Graph("fork")
    g.add("x", "input", cost=1.0)
    for n, c in (("a", 1.0), ("b", 3.0), ("c", 2.0)):
        g.add(n, "call", ["a"], cost=c, fn=inc)
        g.connect("x", "out", n, "a", size=100.0)
    g.add("j", "call", ["a", "b", "c"], cost=1.0, fn=lambda a, b, c: a + b + c)
    for n in "abc":
        g.connect(n, "out", "j", n, size=100.0)
    return g


def test_edge_cost() -> None:
    e = Edge("a", "out", "b", "in", size=200.0)
    assert CommModel().edge_cost(e) == 0.0
    assert CommModel(latency=0.5, bandwidth=100.0).edge_cost(e) == 2.5
    assert CommModel(bandwidth=100.0).edge_cost(Edge("a", "out", "b", "in")) == 0.0


def test_levels_and_critical_path_by_hand() -> None:
    g = fork_join()
    comm = CommModel(latency=1.0)
    assert top_levels(g) == {"x": 0.0, "a": 1.0, "b": 1.0, "c": 1.0, "j": 4.0}
    assert top_levels(g, comm)["j"] == 6.0
    assert bottom_levels(g)["x"] == 5.0
    assert critical_path(g) == (["x", "b", "j"], 5.0)
    assert critical_path(g, comm) == (["x", "b", "j"], 7.0)


def test_simulate_by_hand_and_single_cluster() -> None:
    g = fork_join()
    two = Clustering((("x", "b", "j"), ("a", "c")))
    comm = CommModel(latency=1.0)
    s = simulate(g, two, comm)
    # a starts at 2 (x done at 1, +1 comm), a, c finish at 3, 5; j waits for c's data: 5 + 1 = 6
    assert s.start["a"] == 2.0 and s.finish["c"] == 5.0 and s.start["j"] == 6.0 and s.makespan == 7.0
    assert simulate(g, single_cluster(g), comm).makespan == g.total_cost()


def test_simulate_reports_deadlock_and_bad_clusterings() -> None:
    g = fork_join()
    with pytest.raises(GraphError, match="deadlock"):
        simulate(g, Clustering((("j", "x", "a", "b", "c"),)))
    with pytest.raises(GraphError, match="'c'"):
        simulate(g, Clustering((("x", "a", "b", "j"),)))
    with pytest.raises(GraphError, match="exactly one"):
        simulate(g, Clustering((("x", "a", "b", "c", "j"), ("a",))))


def test_merge_rejects_zero_workers() -> None:
    g = fork_join()
    with pytest.raises(GraphError, match="at least 1 worker"):
        merge_clusters(g, singleton_clusters(g), 0)


def test_cloning_a_cheap_fanout_node_helps() -> None:
    g = Graph("fan")
    g.add("x", "input", cost=0.0)
    g.add("s", "call", ["a"], cost=0.1, fn=inc)
    g.connect("x", "out", "s", "a", size=1.0)
    for i in range(3):
        g.add(f"w{i}", "call", ["a"], cost=5.0, fn=inc)
        g.connect("s", "out", f"w{i}", "a", size=1000.0)
        g.add(f"y{i}", "output", ["in"], (), cost=0.0)
        g.connect(f"w{i}", "out", f"y{i}", "in")
    clusters = Clustering((("x", "s", "w0", "y0"), ("w1", "y1"), ("w2", "y2")))
    comm = CommModel(latency=0.0, bandwidth=100.0)
    out, oc = clone_shared_nodes(g, clusters, max_cost=1.0, comm=comm)
    assert {n.name for n in out if n.attrs.get("clone_of") == "s"} == {"s@1", "s@2"}
    assert simulate(out, oc, comm).makespan < simulate(g, clusters, comm).makespan
    assert evaluate(out, {"x": 1}) == evaluate(g, {"x": 1})


def assert_path_consistent(g: Graph, c: Clustering) -> None:
    """Every node in one cluster; no node runs before one of its ancestors on the same worker; no deadlock."""
    c.check(g)
    ancestors: dict[str, set[str]] = {}
    for n in topo_order(g):
        ancestors[n] = {p for p in g.predecessors(n)}.union(*(ancestors[p] for p in g.predecessors(n)))
    for cluster in c.clusters:
        for i, n in enumerate(cluster):
            assert not ancestors[n] & set(cluster[i + 1:]), (n, cluster)
    simulate(g, c)


comms = st.sampled_from([CommModel(), CommModel(latency=0.5), CommModel(latency=0.1, bandwidth=1000.0)])


@settings(max_examples=50, deadline=None)
@given(dags(), comms, st.integers(1, 4))
def test_clustering_merging_and_bounds(g: Graph, comm: CommModel, workers: int) -> None:
    lin = linear_clustering(g, comm)
    assert_path_consistent(g, lin)
    path, length = critical_path(g, comm)
    assert list(lin.clusters[0]) == path
    merged = merge_clusters(g, lin, workers, comm)
    assert len(merged) <= workers
    assert_path_consistent(g, merged)
    free = merge_clusters(g, lin, workers)
    span = simulate(g, free).makespan
    cp = critical_path(g)[1]
    assert cp - EPS <= span <= g.total_cost() + EPS
    assert math.isclose(simulate(g, single_cluster(g)).makespan, g.total_cost(), abs_tol=EPS)
    assert simulate(g, lin, comm).makespan >= cp - EPS  # comm only adds to the no-comm bound
    assert length >= cp - EPS


@settings(max_examples=50, deadline=None)
@given(dags(), comms, st.integers(1, 3), st.floats(0.0, 5.0))
def test_cloning_never_hurts_and_preserves_values(g: Graph, comm: CommModel, workers: int, limit: float) \
        -> None:
    clustering = merge_clusters(g, linear_clustering(g, comm), workers, comm)
    before = fingerprint(g)
    out, oc = clone_shared_nodes(g, clustering, limit, comm)
    assert fingerprint(g) == before
    assert_path_consistent(out, oc)
    assert simulate(out, oc, comm).makespan <= simulate(g, clustering, comm).makespan + EPS
    assert evaluate(out, inputs_for(g)) == evaluate(g, inputs_for(g))
    for n in out:
        if "clone_of" in n.attrs:
            assert n.name.startswith(n.attrs["clone_of"] + "@")
