"""The reaction graph: a reflow.graph Graph with port and declaration-order edges, levels for parallelism."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reflow.errors import CausalityError
from reflow.graph import level_sets, topo_order
from reflow.runtime.program import ActionSpec, Program, ReactionSpec, reaction_graph


def test_edges_follow_ports_routes_and_declaration_order() -> None:
    p = Program("p", [
        ReactionSpec("a.r0", "a", 0, ("@startup",), effects=("a.out",)),
        ReactionSpec("a.r1", "a", 1, ("@startup",)),
        ReactionSpec("b.r0", "b", 0, ("b.in",), effects=("b.out",)),
        ReactionSpec("c.r0", "c", 0, ("@startup",), sources=("c.in",)),
    ], routes={"a.out": ("b.in",), "b.out": ("c.in",)})
    g = reaction_graph(p)
    assert {(e.src, e.dst) for e in g.edges} == {("a.r0", "a.r1"), ("a.r0", "b.r0"), ("b.r0", "c.r0")}
    assert all(n.op == "reaction" for n in g) and g.node("b.r0").attrs["reactor"] == "b"
    assert level_sets(g) == [["a.r0"], ["a.r1", "b.r0"], ["c.r0"]]


def test_actions_add_no_same_tag_edges() -> None:
    """Scheduling lands on a later tag: a reaction may schedule the action that triggers it."""
    p = Program("p", [
        ReactionSpec("a.emit", "a", 0, ("a.act",)),
        ReactionSpec("b.take", "b", 0, ("@startup", "b.act"), effects=("a.act", "b.act")),
    ], actions=[ActionSpec("a.act", 0, False), ActionSpec("b.act", 0, False)])
    assert reaction_graph(p).edges == []


def test_self_loop_is_a_causality_error() -> None:
    p = Program("p", [ReactionSpec("a.r", "a", 0, ("a.in",), effects=("a.out",))],
                routes={"a.out": ("a.in",)})
    with pytest.raises(CausalityError, match=r"a\.r reads port a\.in that it writes itself"):
        reaction_graph(p)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 7), st.integers(0, 7)), max_size=20))
def test_random_programs_are_acyclic_exactly_when_the_graph_is(pairs: list[tuple[int, int]]) -> None:
    """Oracle: a cycle exists iff a DFS on the reactor-to-reactor port graph finds one."""
    reactions = [ReactionSpec(f"r{i}.x", f"r{i}", 0, (f"r{i}.in",), effects=(f"r{i}.out",)) for i in range(8)]
    routes: dict[str, tuple[str, ...]] = {}
    adj: dict[int, set[int]] = {i: set() for i in range(8)}
    for s, d in pairs:
        routes[f"r{s}.out"] = (*routes.get(f"r{s}.out", ()), f"r{d}.in")
        adj[s].add(d)
    state: dict[int, int] = {}

    def cyclic(n: int) -> bool:
        state[n] = 1
        for m in adj[n]:
            if state.get(m) == 1 or (m not in state and cyclic(m)):
                return True
        state[n] = 2
        return False

    has_cycle = any(n not in state and cyclic(n) for n in range(8))
    program = Program("p", reactions, routes={k: tuple(dict.fromkeys(v)) for k, v in routes.items()})
    if has_cycle:
        with pytest.raises(CausalityError):
            reaction_graph(program)
    else:
        g = reaction_graph(program)
        order = topo_order(g)
        for s, d in pairs:
            assert order.index(f"r{s}.x") < order.index(f"r{d}.x")
