"""The passes over a recurrent program's dependence graph, in the order ``optimize`` runs them.

Each is a plain function ``Graph -> Graph`` that copies before it changes anything, and every one is checked
in the tests by running the program before and after it against the reference interpreter.

- ``dead_code``: drop nodes no root (logger, env step, parameter, requested output) depends on; the shared
  ``reflow.graph.dead_code_elimination`` does it, since reachability does not care about cycles.
- ``duplicates``: merge nodes computing the same op of the same inputs at the same indices (a network applied
  twice to the same observations in the loss and in acting), so it runs once.
- ``incrementalize``: see ``incremental.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from reflow.graph.cse import mergeable, values_equal
from reflow.graph.dce import dead_code_elimination
from reflow.graph.graph import Graph, Node
from reflow.recurrent.dgraph import sccs


def dead_code(g: Graph, roots: list[str]) -> Graph:
    return dead_code_elimination(g, keep=[r for r in roots if r in g])


def _key_attrs(n: Node) -> dict[str, Any]:
    return {k: v for k, v in n.attrs.items() if k != "label"}


def _same_attrs(a: Node, b: Node) -> bool:
    x, y = _key_attrs(a), _key_attrs(b)
    if x.keys() != y.keys():
        return False
    for k in x:
        u, v = x[k], y[k]
        ku, kv = getattr(u, "key", None), getattr(v, "key", None)
        if ku is not None or kv is not None:
            if ku != kv:
                return False
        elif isinstance(u, tuple) and isinstance(v, tuple):
            if len(u) != len(v) or any(getattr(p, "key", p) != getattr(q, "key", q) if hasattr(p, "key")
                                       else not values_equal(p, q) for p, q in zip(u, v, strict=True)):
                return False
        elif not values_equal(u, v):
            return False
    return True


def duplicates(g: Graph, roots: list[str]) -> Graph:
    """Merge duplicate nodes (acyclic parts; nodes on cycles are kept as they are), to a fixed point."""
    protected = set(roots)
    while True:
        alias: dict[str, str] = {}
        buckets: dict[tuple[Any, ...], list[str]] = {}
        for comp in sccs(g):
            if len(comp) > 1 or comp[0] in g.successors(comp[0]):
                continue
            name = comp[0]
            n = g.node(name)
            if name in protected or not mergeable(n) or n.attrs.get("param"):
                continue
            incoming = tuple(sorted((e.dst_port, alias.get(e.src, e.src), e.src_port)
                                    for e in g.in_edges(name)))
            key = (n.op, n.inputs, n.outputs, incoming)
            same = buckets.setdefault(key, [])
            twin = next((s for s in same if _same_attrs(g.node(s), n)), None)
            if twin is None:
                same.append(name)
            else:
                alias[name] = twin
        if not alias:
            return g
        out = Graph(g.name)
        for n in g:
            if n.name not in alias:
                out.add_node(n)
        for e in g.edges:
            if e.dst not in alias:
                out.connect(alias.get(e.src, e.src), e.src_port, e.dst, e.dst_port, e.size)
        g = out


def optimize(prog: Any) -> tuple[Graph, list[tuple[str, int, int]]]:
    """Run the passes on ``prog.source``; returns the graph and (pass, nodes before, nodes after) per pass."""
    from reflow.recurrent.incremental import incrementalize

    log: list[tuple[str, int, int]] = []

    def run(name: str, fn: Callable[[Graph], Graph], g: Graph) -> Graph:
        before = len(g)
        out = fn(g)
        log.append((name, before, len(out)))
        return out

    g: Graph = prog.source
    roots: list[str] = prog.roots
    g = run("dead code", lambda x: dead_code(x, roots), g)
    g = run("duplicates", lambda x: duplicates(x, roots), g)
    g = run("incrementalize", lambda x: incrementalize(x, prog.sizes), g)
    g = run("dead code", lambda x: dead_code(x, roots), g)
    return g, log
