"""Dead code elimination: drop every node whose result cannot reach anything kept."""

from __future__ import annotations

from collections.abc import Iterable

from reflow.graph.graph import Graph


def default_roots(g: Graph) -> list[str]:
    """Outputs and side-effecting nodes; if there are none, every sink (so nothing is dead)."""
    roots = [n.name for n in g if n.op == "output" or n.attrs.get("side_effect")]
    return roots or g.sinks()


def dead_code_elimination(g: Graph, keep: Iterable[str] | None = None) -> Graph:
    """A copy of ``g`` without the nodes from which no node of ``keep`` is reachable."""
    stack = list(default_roots(g) if keep is None else keep)
    live: set[str] = set()
    while stack:
        n = stack.pop()
        if n in live:
            continue
        g.node(n)  # raises, naming the node, if ``keep`` names a node that does not exist
        live.add(n)
        stack.extend(g.predecessors(n))
    return g.copy().subgraph(n for n in g.names if n in live).copy(g.name)
