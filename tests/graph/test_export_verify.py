"""Export (DOT/SVG), verification, the pass runner and the reference interpreter."""

from __future__ import annotations

import random
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from strategies import add, inc

from reflow.errors import CycleError, DanglingPortError, GraphError, PortTypeError
from reflow.graph import (
    Edge,
    Graph,
    Node,
    Port,
    common_subexpression_elimination,
    dead_code_elimination,
    evaluate,
    fuse_chains,
    linear_clustering,
    merge_clusters,
    run_passes,
    simulate,
    to_dot,
    to_svg,
    verify,
    write_graph,
)


def random_layered(n: int, seed: int) -> Graph:
    rng = random.Random(seed)
    g = Graph(f"layered{n}")
    g.add("x", "input")
    names = ["x"]
    for i in range(n - 1):
        g.add(f"n{i}", "call", ["a", "b"], cost=rng.uniform(0.1, 2.0), fn=add)
        window = names[-20:]
        for p in ("a", "b"):
            g.connect(rng.choice(window), "out", f"n{i}", p, size=rng.choice([0.0, 1e3, 1e6]))
        names.append(f"n{i}")
    return g


def test_svg_and_dot_render_small_and_large(tmp_path: Path) -> None:
    for n in (5, 300):
        g = random_layered(n, seed=n)
        c = linear_clustering(g)
        root = ET.fromstring(to_svg(g, c, title=f"{n} nodes"))
        assert root.tag.endswith("svg")
        assert len(root.findall(".//{http://www.w3.org/2000/svg}rect")) == n + 1
        assert len(root.findall(".//{http://www.w3.org/2000/svg}path")) == len(g.edges) + 1
        dot = to_dot(g, c)
        assert dot.count("subgraph cluster_") == len(c) and dot.count("\" -> \"") == len(g.edges)
    assert write_graph(g, tmp_path / "g.svg").read_text().startswith("<svg")
    assert "digraph" in write_graph(g, tmp_path / "g.dot").read_text()
    with pytest.raises(GraphError, match=r"\.png"):
        write_graph(g, tmp_path / "g.png")


def test_merge_is_fast_enough_for_a_large_graph() -> None:
    g = random_layered(900, seed=1)
    lin = linear_clustering(g)
    merged = merge_clusters(g, lin, 4)
    assert len(merged) <= 4
    merged.check(g)
    assert simulate(g, merged).makespan <= g.total_cost()


def test_validate_and_verify_catch_faults() -> None:
    g = Graph("bad")
    g.add("a", "call", ["x"])
    with pytest.raises(DanglingPortError, match=r"a\.x"):
        g.validate()
    g2 = Graph("typed")
    g2.add_node(Node("p", "call", (), (Port("out", "f32"),)))
    g2.add_node(Node("q", "call", (Port("in", "i64"),), ()))
    with pytest.raises(PortTypeError, match=r"p\.out"):
        g2.connect("p", "out", "q", "in")
    cyc = Graph("cyc")
    for n in ("u", "v", "w"):
        cyc.add(n, "call", ["in"])
    cyc.connect("u", "out", "v", "in")
    cyc.connect("v", "out", "w", "in")
    cyc.connect("w", "out", "u", "in")
    with pytest.raises(CycleError) as err:
        verify(cyc)
    assert set(err.value.cycle) == {"u", "v", "w"}
    assert all(n in str(err.value) for n in "uvw")


def test_verify_catches_a_dangling_edge() -> None:
    g = Graph("dangle")
    g.add("a", "call", ["x"])
    g.add("b", "call", ["x"])
    g.connect("a", "out", "b", "x")
    bad = g.without([])
    bad._add_edge_unchecked(Edge("a", "nope", "b", "x"))
    with pytest.raises(GraphError, match="no output port 'nope'"):
        verify(bad)


def test_run_passes_checks_each_pass_and_catches_mutation() -> None:
    g = Graph("p")
    g.add("x", "input")
    g.add("a", "call", ["a"], fn=inc)
    g.add("b", "call", ["a"], fn=inc)
    g.add("y", "output", ["in"], ())
    g.connect("x", "out", "a", "a")
    g.connect("a", "out", "b", "a")
    g.connect("b", "out", "y", "in")
    out = run_passes(g, [dead_code_elimination, common_subexpression_elimination, fuse_chains])
    assert out.names == ["x", "a", "y"] and evaluate(out, {"x": 0}) == {"y": 2}

    def vandal(h: Graph) -> Graph:
        h.add("junk", "const", value=1)
        return h.copy()

    with pytest.raises(GraphError, match="vandal mutated"):
        run_passes(g, [vandal])


def test_interpreter_multi_output_and_custom_ops() -> None:
    g = Graph("multi")
    g.add("x", "input")
    g.add("split", "divmod", ["v"], ["q", "r"])
    g.add("s", "call", ["a", "b"], fn=add)
    g.add("y", "output", ["in"], ())
    g.connect("x", "out", "split", "v")
    g.connect("split", "q", "s", "a")
    g.connect("split", "r", "s", "b")
    g.connect("s", "out", "y", "in")
    impls = {"divmod": lambda node, v: divmod(v, 10)}
    assert evaluate(g, {"x": 47}, impls) == {"y": 11}
    with pytest.raises(GraphError, match="divmod"):
        evaluate(g, {"x": 47})
    with pytest.raises(GraphError, match="'x'"):
        evaluate(g, {}, impls)
