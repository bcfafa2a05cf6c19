"""Contraction and cycle grouping: what placement builds on."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import dags

from reflow.errors import GraphError
from reflow.graph import Graph
from reflow.graph.contract import contract, cycle_groups
from reflow.graph.order import topo_order


def digraph(n: int, edges: list[tuple[int, int]]) -> Graph:
    g = Graph("g")
    for i in range(n):
        g.add(f"n{i}", "op", inputs=["in"], outputs=["out"], cost=float(i + 1))
    for a, b in edges:
        if a != b:
            g.connect(f"n{a}", "out", f"n{b}", "in", size=1.0)
    return g


def test_contract_sums_costs_and_merges_parallel_edges() -> None:
    g = digraph(4, [(0, 1), (0, 2), (1, 3), (2, 3)])
    q = contract(g, {"n0": "a", "n1": "b", "n2": "b", "n3": "c"})
    assert [(n.name, n.cost, n.attrs["members"]) for n in q] == [
        ("a", 1.0, ("n0",)), ("b", 5.0, ("n1", "n2")), ("c", 4.0, ("n3",))]
    assert [(e.src, e.dst, e.size) for e in q.edges] == [("a", "b", 2.0), ("b", "c", 2.0)]


def test_contract_names_nodes_without_a_group() -> None:
    with pytest.raises(GraphError, match="n2"):
        contract(digraph(3, []), {"n0": "a", "n1": "a"})


def test_cycle_groups_finds_each_cycle() -> None:
    g = digraph(5, [(0, 1), (1, 2), (2, 1), (2, 3), (3, 4), (4, 3)])
    assert cycle_groups(g) == {"n0": "n0", "n1": "n1", "n2": "n1", "n3": "n3", "n4": "n3"}


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 12).flatmap(
    lambda n: st.tuples(st.just(n), st.lists(st.tuples(st.integers(0, n - 1), st.integers(0, n - 1))))))
def test_contracting_cycle_groups_leaves_a_dag_with_the_same_cost(case: tuple[int, list[tuple[int, int]]]) \
        -> None:
    g = digraph(*case)
    groups = cycle_groups(g)
    dag = contract(g, groups)
    topo_order(dag)  # raises on a cycle
    assert dag.total_cost() == pytest.approx(g.total_cost())
    for e in g.edges:  # nodes on a common cycle share a group; every other edge survives as a group edge
        a, b = groups[e.src], groups[e.dst]
        assert a == b or b in dag.successors(a)
    for n, head in groups.items():  # and only nodes on a common cycle do
        assert head == n or (head in reachable(g, n) and n in reachable(g, head))


def reachable(g: Graph, start: str) -> set[str]:
    seen, todo = {start}, [start]
    while todo:
        for s in g.successors(todo.pop()):
            if s not in seen:
                seen.add(s)
                todo.append(s)
    return seen


@settings(max_examples=40, deadline=None)
@given(dags())
def test_a_dag_has_only_singleton_cycle_groups(g: Graph) -> None:
    assert cycle_groups(g) == {n: n for n in g.names}
