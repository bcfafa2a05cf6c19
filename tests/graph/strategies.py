"""Hypothesis strategies: random dataflow DAGs the reference interpreter can run.

Nodes are "input", "const", "call" (arithmetic on small integers, modulo a prime so values stay small) and
"output"; costs and edge sizes are random. Every node is added after its predecessors, so the result is a DAG.
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from reflow.graph import Graph

PRIME = 1009


def add(a: int, b: int) -> int:
    return (a + b) % PRIME


def mul(a: int, b: int) -> int:
    return (a * b) % PRIME


def sub(a: int, b: int) -> int:
    return (a - b) % PRIME


def inc(a: int) -> int:
    return (a + 1) % PRIME


def neg(a: int) -> int:
    return (-a) % PRIME


BINARY = (add, mul, sub)
UNARY = (inc, neg)


@st.composite
def dags(draw: st.DrawFn, max_nodes: int = 14, outputs: bool = True) -> Graph:
    """A random DAG with 1-2 inputs, consts, calls and (if ``outputs``) 1-3 output nodes."""
    g = Graph("random")
    names: list[str] = []
    for i in range(draw(st.integers(1, 2))):
        g.add(f"in{i}", "input", cost=draw(st.floats(0, 1)))
        names.append(f"in{i}")
    for i in range(draw(st.integers(1, max_nodes))):
        cost = draw(st.floats(0.0, 5.0))
        kind = draw(st.sampled_from(["const", "unary", "binary", "binary"]))
        name = f"n{i}"
        if kind == "const":
            g.add(name, "const", cost=cost, value=draw(st.integers(0, 5)))
        else:
            fns = BINARY if kind == "binary" else UNARY
            fn = draw(st.sampled_from(fns))
            ins = ["a", "b"] if kind == "binary" else ["a"]
            g.add(name, "call", ins, cost=cost, fn=fn)
            for p in ins:
                src = draw(st.sampled_from(names))
                g.connect(src, "out", name, p, size=draw(st.sampled_from([0.0, 10.0, 1000.0])))
        names.append(name)
    if outputs:
        for i in range(draw(st.integers(1, 3))):
            g.add(f"out{i}", "output", ["in"], (), cost=0.0)
            g.connect(draw(st.sampled_from(names)), "out", f"out{i}", "in")
    return g


def inputs_for(g: Graph) -> dict[str, Any]:
    """Deterministic values for a random graph's inputs."""
    return {n.name: 3 + 7 * i for i, n in enumerate(g) if n.op == "input"}
