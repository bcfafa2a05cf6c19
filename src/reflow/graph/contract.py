"""Contraction: the quotient graph of a grouping of nodes, and the grouping that makes a graph acyclic.

Placement decides where *groups* of nodes live (all reactions of a reactor share its state, so they share a
process), while the clustering passes work on nodes. Contracting each group to one node lets the same passes
place groups. A quotient can have cycles even when the graph has none (reactor A feeds B, which feeds a later
reaction of A); ``cycle_groups`` finds its strongly connected components, and contracting those as well gives
a DAG on which every pass runs.
"""

from __future__ import annotations

from collections.abc import Mapping

from reflow.errors import GraphError
from reflow.graph.graph import Graph, Node, Port

GROUP_PORT = "dep"


def contract(g: Graph, group_of: Mapping[str, str], name: str | None = None) -> Graph:
    """One ``"group"`` node per group (cost: the sum of its members'; ``attrs["members"]``: their names),
    one edge per ordered pair of groups that exchange data (size: the sum of their edges' sizes)."""
    missing = [n for n in g.names if n not in group_of]
    if missing:
        raise GraphError(f"contract: nodes {missing[:5]} of graph {g.name!r} have no group")
    members: dict[str, list[str]] = {}
    for n in g.names:
        members.setdefault(group_of[n], []).append(n)
    out = Graph(name or f"{g.name}/contracted")
    for group, names in members.items():
        out.add_node(Node(group, "group", (Port(GROUP_PORT, required=False),), (Port(GROUP_PORT),),
                          sum(g.node(n).cost for n in names), {"members": tuple(names)}))
    sizes: dict[tuple[str, str], float] = {}
    for e in g.edges:
        pair = (group_of[e.src], group_of[e.dst])
        if pair[0] != pair[1]:
            sizes[pair] = sizes.get(pair, 0.0) + e.size
    for (src, dst), size in sizes.items():
        out.connect(src, GROUP_PORT, dst, GROUP_PORT, size)
    return out


def cycle_groups(g: Graph) -> dict[str, str]:
    """Node -> its strongly connected component, named after the component's earliest-inserted node.

    Tarjan's algorithm, iterative (no recursion limit on long chains), visiting nodes in insertion order.
    """
    rank = {n: i for i, n in enumerate(g.names)}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: dict[str, str] = {}
    for root in g.names:
        if root in index:
            continue
        work: list[tuple[str, int]] = [(root, 0)]
        while work:
            n, i = work.pop()
            if i == 0:
                index[n] = low[n] = len(index)
                stack.append(n)
                on_stack.add(n)
            succ = g.successors(n)
            if i < len(succ):
                work.append((n, i + 1))
                s = succ[i]
                if s not in index:
                    work.append((s, 0))
                elif s in on_stack:
                    low[n] = min(low[n], index[s])
                continue
            if low[n] == index[n]:
                component: list[str] = []
                while True:
                    m = stack.pop()
                    on_stack.discard(m)
                    component.append(m)
                    if m == n:
                        break
                head = min(component, key=rank.__getitem__)
                out.update((m, head) for m in component)
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[n])
    return out
