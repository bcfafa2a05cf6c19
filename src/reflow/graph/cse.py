"""Common subexpression elimination: compute each distinct value once.

Two nodes are the same expression when they have the same op, equal attrs, the same ports and identical
incoming edges (after earlier merges). Nodes with an identity of their own are never merged: graph inputs
and outputs, reactions, in a graph without output nodes its sinks (they are its results), and anything
marked ``side_effect`` or ``impure``. Attrs may hold things without a sane ``==`` (numpy arrays);
``values_equal`` compares them by value where it can and treats anything else it cannot compare as
different, so the pass never crashes and never merges on a guess.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from reflow.graph.graph import Graph, Node
from reflow.graph.order import topo_order

NEVER_MERGED = frozenset({"input", "output", "reaction"})


def values_equal(a: Any, b: Any) -> bool:
    """Structural equality that never raises; unknown incomparable values are unequal."""
    if a is b:
        return True
    if type(a) is not type(b):
        return False
    if isinstance(a, np.ndarray):
        return a.shape == b.shape and a.dtype == b.dtype and bool(np.array_equal(a, b))
    if isinstance(a, Mapping):
        return a.keys() == b.keys() and all(values_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(values_equal(x, y) for x, y in zip(a, b, strict=True))
    try:
        return bool(a == b)
    except Exception:
        return False


def mergeable(node: Node) -> bool:
    return node.op not in NEVER_MERGED and not node.attrs.get("side_effect") and not node.attrs.get("impure")


def common_subexpression_elimination(g: Graph) -> Graph:
    """A copy of ``g`` with duplicate expressions merged into the earliest; iterated to a fixed point."""
    while True:
        out = _cse_once(g)
        if len(out) == len(g):
            return out
        g = out


def _cse_once(g: Graph) -> Graph:
    alias: dict[str, str] = {}
    buckets: dict[tuple[Any, ...], list[Node]] = {}
    has_outputs = any(n.op == "output" for n in g)
    for name in topo_order(g):
        node = g.node(name)
        if not mergeable(node) or (not has_outputs and not g.out_edges(name)):
            continue
        incoming = tuple(sorted((e.dst_port, alias.get(e.src, e.src), e.src_port) for e in g.in_edges(name)))
        key = (node.op, node.inputs, node.outputs, incoming)
        same = buckets.setdefault(key, [])
        twin = next((s for s in same if values_equal(dict(s.attrs), dict(node.attrs))), None)
        if twin is None:
            same.append(node)
        else:
            alias[name] = twin.name
    out = Graph(g.name)
    for node in g:
        if node.name not in alias:
            out.add_node(node)
    for e in g.edges:
        if e.dst not in alias:
            out.connect(alias.get(e.src, e.src), e.src_port, e.dst, e.dst_port, e.size)
    return out.copy()
