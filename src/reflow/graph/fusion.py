"""Chain fusion: collapse every maximal linear chain into one node.

A chain link u -> v needs u to have exactly one successor and v exactly one predecessor, so fusing never
changes what can run in parallel, only removes hand-offs. Graph inputs and outputs are never fused: they are
the graph's interface. The fused node keeps the members and their internal edges in its attrs, so the
reference interpreter (and any runtime) can still run it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from reflow.graph.graph import Graph, Node
from reflow.graph.order import topo_order

INTERFACE = frozenset({"input", "output"})


Link = Callable[[Graph, str, str], bool]


def _linkable(g: Graph, u: str, v: str, may: Link | None = None) -> bool:
    return (g.successors(u) == [v] and g.predecessors(v) == [u]
            and g.node(u).op not in INTERFACE and g.node(v).op not in INTERFACE
            and (may is None or may(g, u, v)))


def chains(g: Graph, may: Link | None = None) -> list[list[str]]:
    """The maximal linear chains of two or more nodes, each in order, in topological order of their heads.

    ``may(g, u, v)``, if given, can forbid a link the structure allows (a front end's own rule)."""
    out: list[list[str]] = []
    for n in topo_order(g):
        preds = g.predecessors(n)
        if len(preds) == 1 and _linkable(g, preds[0], n, may):
            continue  # not a head
        chain = [n]
        while len(g.successors(chain[-1])) == 1 and _linkable(g, chain[-1], g.successors(chain[-1])[0], may):
            chain.append(g.successors(chain[-1])[0])
        if len(chain) > 1:
            out.append(chain)
    return out


def fuse_chains(g: Graph, may: Link | None = None) -> Graph:
    """A copy of ``g`` with each maximal chain replaced by one ``"fused"`` node named after its head
    (``may``: see ``chains``)."""
    owner: dict[str, str] = {}
    fused: dict[str, Node] = {}
    for chain in chains(g, may):
        members = [g.node(n) for n in chain]
        inner = [e for n in chain[1:] for e in g.in_edges(n)]
        head, tail = members[0], members[-1]
        fused[head.name] = Node(head.name, "fused", head.inputs, tail.outputs, sum(m.cost for m in members),
                                {"members": list(chain), "ops": [m.op for m in members],
                                 "nodes": tuple(replace(m, attrs=dict(m.attrs)) for m in members),
                                 "edges": tuple(inner)})
        for n in chain:
            owner[n] = head.name
    out = Graph(g.name)
    for node in g:
        if node.name not in owner:
            out.add_node(replace(node, attrs=dict(node.attrs)))
        elif node.name in fused:
            out.add_node(fused[node.name])
    for e in g.edges:
        src, dst = owner.get(e.src, e.src), owner.get(e.dst, e.dst)
        if src == dst and e.src in owner:
            continue  # internal to a chain
        out.connect(src, e.src_port, dst, e.dst_port, e.size)
    return out
