"""The passes over a recurrent program's dependence graph, in the order ``optimize`` runs them.

Each is a plain function ``Graph -> Graph`` that copies before it changes anything, and every one is checked
in the tests by running the program before and after it against the reference interpreter.

- ``dead_code``: drop nodes no root (logger, env step, parameter, requested output) depends on; the shared
  ``reflow.graph.dead_code_elimination`` does it, since reachability does not care about cycles.
- ``duplicates``: merge nodes computing the same op of the same inputs at the same indices (a network applied
  twice to the same observations in the loss and in acting), so it runs once.
- ``specialize``: a conditional definition read at a constant index (``w[i, 0]``: the parameters acting uses,
  at the first epoch of each iteration) is split off as its own node holding only the cases that can hold
  there (``w[i, 0]`` comes from the previous iteration's last epoch, never from this iteration's epochs).
  Without this, acting and the epochs would look like one cycle and no loop nest could be found
  (index-set splitting, in polyhedral terms).
- ``incrementalize``: see ``incremental.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
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


def specialize(g: Graph) -> Graph:
    """Read each merge read at constant indices through a merge specialized to those indices."""
    from reflow.graph.graph import Port
    from reflow.recurrent.conditions import Const
    from reflow.recurrent.context import Branch
    from reflow.recurrent.dgraph import domain, kind
    from reflow.recurrent.symbolic import Lin

    out = g.copy()
    made: dict[tuple[str, tuple[tuple[str, int], ...]], str] = {}
    for n in list(g):
        if kind(n) != "index":
            continue
        (e,) = g.in_edges(n.name)
        src = g.node(e.src)
        if kind(src) != "merge":
            continue
        dims = domain(src)
        fixed = {d: x.c0 for d, x in zip(dims, n.attrs["index"], strict=True)
                 if isinstance(x, Lin) and not x.coeffs}
        if not fixed:
            continue
        kept: list[tuple[Branch, str, str]] = []
        feeds = sorted(g.in_edges(src.name), key=lambda x: int(x.dst_port[1:]))
        for br, edge in zip(src.attrs["branches"], feeds, strict=True):
            cond = br.cond.subs(fixed)
            if isinstance(cond, Const) and not cond.value:
                continue
            kept.append((Branch(cond, tuple(x.subs(fixed) for x in br.index)), edge.src, edge.src_port))
            if isinstance(cond, Const):
                break
        if len(kept) == len(src.attrs["branches"]):
            continue  # nothing to gain
        key = (src.name, tuple(sorted(fixed.items())))
        name = made.get(key)
        if name is None:
            name = made[key] = f"{src.name}@" + ",".join(f"{d}={c}" for d, c in sorted(fixed.items()))
            attrs = {**src.attrs, "domain": tuple(d for d in dims if d not in fixed),
                     "branches": tuple(b for b, _, _ in kept), "label": f"{src.attrs.get('label', src.name)}"
                     + "[" + ", ".join(f"{d}={c}" for d, c in sorted(fixed.items())) + "]"}
            attrs.pop("param", None)
            out.add_node(Node(name, "rt.merge", tuple(Port(f"x{k}") for k in range(len(kept))), src.outputs,
                              src.cost, attrs))
            for k, (_, s_node, s_port) in enumerate(kept):
                out.connect(s_node, s_port, name, f"x{k}")
        rest = tuple(x for d, x in zip(dims, n.attrs["index"], strict=True) if d not in fixed)
        rebuilt = Graph(out.name)
        for m in out:
            rebuilt.add_node(replace(m, attrs={**m.attrs, "index": rest}) if m.name == n.name else m)
        for edge in out.edges:
            if edge.dst == n.name:
                rebuilt.connect(name, edge.src_port, n.name, edge.dst_port)
            else:
                rebuilt.connect(edge.src, edge.src_port, edge.dst, edge.dst_port, edge.size)
        out = rebuilt
    return out


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
    g = run("specialize", specialize, g)
    g = run("dead code", lambda x: dead_code(x, roots), g)
    g = run("duplicates", lambda x: duplicates(x, roots), g)
    g = run("incrementalize", lambda x: incrementalize(x, prog.sizes), g)
    d = prog.stream_dim
    if d is not None:
        from reflow.recurrent.stream import rewrite

        g = run("stream", lambda x: rewrite(x, d, prog.sizes, prog.ctx.dim_names), g)
    g = run("dead code", lambda x: dead_code(x, roots), g)
    return g, log
