"""DCE, CSE and fusion: unit cases plus properties against the reference interpreter."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from strategies import add, dags, inc, inputs_for

from reflow.graph import (
    Graph,
    common_subexpression_elimination,
    dead_code_elimination,
    evaluate,
    fuse_chains,
    verify,
)
from reflow.graph.verify import fingerprint


def diamond_with_dup() -> Graph:
    g = Graph("dup")
    g.add("x", "input")
    g.add("a", "call", ["a"], fn=inc)
    g.add("b", "call", ["a"], fn=inc)
    g.add("s", "call", ["a", "b"], fn=add)
    g.add("dead", "call", ["a"], fn=inc)
    g.add("y", "output", ["in"], ())
    for n in ("a", "b", "dead"):
        g.connect("x", "out", n, "a")
    g.connect("a", "out", "s", "a")
    g.connect("b", "out", "s", "b")
    g.connect("s", "out", "y", "in")
    return g


def test_dce_drops_unreachable_nodes() -> None:
    g = diamond_with_dup()
    out = dead_code_elimination(g)
    assert out.names == ["x", "a", "b", "s", "y"]
    assert dead_code_elimination(g, keep=["a"]).names == ["x", "a"]


def test_dce_without_outputs_keeps_everything() -> None:
    g = diamond_with_dup().without(["y"])
    assert dead_code_elimination(g).names == g.names


def test_dce_keeps_side_effects() -> None:
    g = diamond_with_dup()
    g.replace_node(g.node("dead").__class__(**{**g.node("dead").__dict__, "attrs": {"fn": inc,
                                                                                     "side_effect": True}}))
    assert "dead" in dead_code_elimination(g)


def test_cse_merges_duplicates_into_the_earliest() -> None:
    g = diamond_with_dup()
    out = common_subexpression_elimination(g)
    assert "b" not in out and "dead" not in out and "a" in out
    assert [(e.src, e.dst_port) for e in out.in_edges("s")] == [("a", "a"), ("a", "b")]
    assert evaluate(out, {"x": 4}) == evaluate(g, {"x": 4}) == {"y": 10}


def test_cse_handles_numpy_attrs_and_never_merges_inputs() -> None:
    g = Graph()
    g.add("i1", "input")
    g.add("i2", "input")
    g.add("c1", "const", value=np.arange(3))
    g.add("c2", "const", value=np.arange(3))
    g.add("c3", "const", value=np.arange(4))
    g.add("c4", "const", value=np.arange(3), impure=True)
    for i in range(1, 5):
        g.add(f"y{i}", "output", ["in"], ())
        g.connect(f"c{i}", "out", f"y{i}", "in")
    out = common_subexpression_elimination(g)
    assert out.names == ["i1", "i2", "c1", "c3", "c4", "y1", "y2", "y3", "y4"]
    assert [e.src for e in out.in_edges("y2")] == ["c1"]


def test_cse_reaches_a_fixed_point_through_chains() -> None:
    g = Graph()
    g.add("x", "input")
    for branch in ("p", "q"):
        g.add(f"{branch}1", "call", ["a"], fn=inc)
        g.add(f"{branch}2", "call", ["a"], fn=inc)
        g.connect("x", "out", f"{branch}1", "a")
        g.connect(f"{branch}1", "out", f"{branch}2", "a")
        g.add(f"y{branch}", "output", ["in"], ())
        g.connect(f"{branch}2", "out", f"y{branch}", "in")
    out = common_subexpression_elimination(g)
    assert out.names == ["x", "p1", "p2", "yp", "yq"]
    assert [e.src for e in out.in_edges("yq")] == ["p2"]


def test_fusion_collapses_a_chain() -> None:
    g = Graph()
    g.add("x", "input")
    g.add("a", "call", ["a"], cost=1.0, fn=inc)
    g.add("b", "call", ["a"], cost=2.0, fn=inc)
    g.add("c", "call", ["a"], cost=3.0, fn=inc)
    g.add("y", "output", ["in"], ())
    g.connect("x", "out", "a", "a")
    g.connect("a", "out", "b", "a")
    g.connect("b", "out", "c", "a")
    g.connect("c", "out", "y", "in")
    out = fuse_chains(g)
    assert out.names == ["x", "a", "y"]
    fused = out.node("a")
    assert fused.op == "fused" and fused.cost == 6.0
    assert fused.attrs["members"] == ["a", "b", "c"] and fused.attrs["ops"] == ["call"] * 3
    assert evaluate(out, {"x": 1}) == {"y": 4}
    split = fuse_chains(g, may=lambda g, u, v: v != "c")  # a front end's rule: c starts a chain of its own
    assert split.names == ["x", "a", "c", "y"] and split.node("a").attrs["members"] == ["a", "b"]
    assert evaluate(split, {"x": 1}) == {"y": 4}


@settings(max_examples=60, deadline=None)
@given(dags())
def test_passes_preserve_values_and_do_not_mutate(g: Graph) -> None:
    expected = evaluate(g, inputs_for(g))
    for p in (dead_code_elimination, common_subexpression_elimination, fuse_chains):
        before = fingerprint(g)
        out = p(g)
        assert fingerprint(g) == before, p.__name__
        verify(out)
        assert evaluate(out, inputs_for(g)) == expected, p.__name__


@settings(max_examples=40, deadline=None)
@given(dags(outputs=False))
def test_passes_preserve_sink_values_without_outputs(g: Graph) -> None:
    expected = evaluate(g, inputs_for(g))
    for p in (dead_code_elimination, common_subexpression_elimination):
        out = p(g)
        got = evaluate(out, inputs_for(g))
        assert set(got.values()) == set(expected.values()), p.__name__
