"""Structural verification and a pass runner that checks after every pass.

Passes are pure functions Graph -> Graph. ``run_passes`` runs them in order and, like torch.fx's PassManager
with ``run_checks_after_each_pass``, verifies the result after each one, and also checks that the pass left
its input untouched, so a bug is reported at the pass that made it, not three passes later.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from reflow.errors import GraphError
from reflow.graph.graph import Edge, Graph
from reflow.graph.order import topo_order

Pass = Callable[[Graph], Graph]


def neighbourhood(g: Graph, name: str) -> str:
    """A few lines showing ``name``'s edges, for error messages."""
    if name not in g:
        return f"  ({name!r} is not a node)"
    lines = [f"  {e.src}.{e.src_port} -> {e.dst}.{e.dst_port}" for e in g.in_edges(name) + g.out_edges(name)]
    return "\n".join(lines[:12]) or "  (no edges)"


def _fail(g: Graph, edge: Edge, why: str) -> GraphError:
    where = f"{edge.src}.{edge.src_port} -> {edge.dst}.{edge.dst_port}"
    return GraphError(f"graph {g.name!r}: edge {where} {why}\n"
                      f"near {edge.src!r}:\n{neighbourhood(g, edge.src)}\nnear {edge.dst!r}:\n"
                      f"{neighbourhood(g, edge.dst)}")


def verify(g: Graph) -> None:
    """Raise GraphError if an edge names a missing node or port, adjacency disagrees, or on a cycle."""
    for e in g.edges:
        if e.src not in g or e.dst not in g:
            raise _fail(g, e, "points at a node that does not exist")
        if e.src_port not in {p.name for p in g.node(e.src).outputs}:
            raise _fail(g, e, f"leaves from {e.src!r}, which has no output port {e.src_port!r}")
        if e.dst_port not in {p.name for p in g.node(e.dst).inputs}:
            raise _fail(g, e, f"enters {e.dst!r}, which has no input port {e.dst_port!r}")
    for n in g.names:
        for e in g.in_edges(n):
            if e.dst != n or e not in g.out_edges(e.src):
                raise _fail(g, e, f"is listed as entering {n!r} but adjacency disagrees")
        for e in g.out_edges(n):
            if e.src != n or e not in g.in_edges(e.dst):
                raise _fail(g, e, f"is listed as leaving {n!r} but adjacency disagrees")
    if sum(len(g.in_edges(n)) for n in g.names) != len(g.edges):
        raise GraphError(f"graph {g.name!r}: the edge list and the adjacency lists disagree in size")
    topo_order(g)


def fingerprint(g: Graph) -> tuple[object, ...]:
    """What a pass must not change in its input: nodes (with attrs keys) and edges, in order."""
    return (g.name, tuple((n.name, n.op, n.inputs, n.outputs, n.cost, tuple(n.attrs)) for n in g),
            tuple(g.edges))


def run_passes(g: Graph, passes: Sequence[Pass], check: bool = True) -> Graph:
    """Run ``passes`` in order; with ``check``, verify after each and make sure none mutated its input."""
    if check:
        verify(g)
    for p in passes:
        before = fingerprint(g) if check else None
        out = p(g)
        if check:
            name = getattr(p, "__name__", repr(p))
            if fingerprint(g) != before:
                raise GraphError(f"pass {name} mutated its input graph {g.name!r}; passes must copy() first")
            try:
                verify(out)
            except GraphError as err:
                raise GraphError(f"after pass {name}: {err}") from err
        g = out
    return g
