"""Text and pictures of a compiled program: the dependence graph before and after the passes, the schedule.

The graph is printed one node per line, ``label = op(inputs at their indices)  over (domain)  shape``, in
the order the nodes were made; the schedule as the loop nest it is, each run with the dimensions it computes
at once, the values kept across iterations (ring sizes and blocks), frees and donated buffers.
"""

from __future__ import annotations

from typing import Any

from reflow.graph.graph import Graph
from reflow.recurrent.dgraph import domain, kind, label, outs, reads, sccs
from reflow.recurrent.ops import fmt_shape
from reflow.recurrent.schedule import Accumulate, Free, Item, Loop, Run
from reflow.recurrent.symbolic import Expr, fmt_index, var

SHOWN_ATTRS = ("axes", "axis", "gamma", "reverse", "n", "expr", "shape", "perm", "dtype")


def node_line(g: Graph, name: str) -> str:
    n = g.node(name)
    k = kind(n)
    args = []
    for r in reads(g, name):
        src = g.node(r.src)
        ident = all(str(e) == d for d, e in zip(domain(src), r.index, strict=True))
        text = label(src) + (f".{r.src_port}" if r.src_port != "out" else "")
        text += "" if ident and k not in ("index", "window") else fmt_index(r.index)
        args.append(f"[{r.cond}] {text}" if k == "merge" else text)
    extra = [f"{a}={n.attrs[a]}" for a in SHOWN_ATTRS if a in n.attrs and k not in ("merge", "udf")]
    if k == "udf":
        extra.append(f"batched={n.attrs.get('batched')}" if n.attrs.get("batched") else "")
    shapes = ", ".join(fmt_shape(o.shape) for o in outs(n))
    body = f"{k}({', '.join(args + [e for e in extra if e])})"
    dom = ", ".join(domain(n))
    return f"{label(n)} = {body}  over ({dom})  {shapes}"


def graph_text(g: Graph) -> str:
    return "\n".join(node_line(g, n) for n in g.names)


def schedule_text(items: list[Item], g: Graph, keep: dict[tuple[str, str], dict[str, int]],
                  depth: int = 0) -> list[str]:
    out: list[str] = []
    pad = "  " * depth
    for it in items:
        if isinstance(it, Loop):
            out.append(f"{pad}for {it.dim} {'backward' if it.reverse else 'forward'}:")
            out += schedule_text(it.body, g, keep, depth + 1)
        elif isinstance(it, Accumulate):
            out.append(f"{pad}{label(g.node(it.node))} += this step's part" + (f"  [{it.skew} steps behind]"
                                                                               if it.skew else ""))
        elif isinstance(it, Run):
            n = g.node(it.node)
            kept: list[str] = []
            for o in outs(n):
                for d, size in keep.get((it.node, o.port), {}).items():
                    what = f"{d}: block" if size == 0 else f"{d}: ring {size}" if size > 1 else ""
                    if what and what not in kept:
                        kept.append(what)
            notes = [f"all {', '.join(it.vec)} at once" if it.vec else "one point"]
            notes += [k for k in kept if k]
            if it.donate:
                notes.append(f"result in the buffer of input {it.donate}")
            if it.skew:
                notes.append(f"{it.skew} steps behind")
            out.append(f"{pad}{label(n)} = {kind(n)}  [{'; '.join(notes)}]")
        elif isinstance(it, Free):
            out.append(f"{pad}free {', '.join(label(g.node(n)) for n in it.nodes)}")
    return out


def explain(prog: Any) -> str:
    """The program before and after the passes, the pass log and the schedule, as text."""
    src: Graph = prog.source
    g: Graph = prog.graph
    cyc = [c for c in sccs(g) if len(c) > 1 or c[0] in g.successors(c[0])]
    lines = [f"program {src.name}: bounds {', '.join(f'{k}={v}' for k, v in prog.bounds.items())}",
             "", f"== dependence graph as written ({len(src)} nodes) ==", graph_text(src),
             "", "== passes =="]
    lines += [f"{name:<16} {before:>4} -> {after:>4} nodes" for name, before, after in prog.pass_log]
    lines += ["", f"== dependence graph after the passes ({len(g)} nodes, {len(cyc)} recurrences) ==",
              graph_text(g), "", "== schedule =="]
    mode = f"learning runs behind acting along {prog.stream_dim}" if prog.stream_dim else \
        "each loop runs to its end before what reads it"
    lines.append(f"{mode}; values kept at most ~{prog.memory_estimate / 2**20:.2f} MiB (estimate)")
    if prog.offload:
        lines.append(f"on disk while their loop runs: "
                     f"{', '.join(sorted(label(g.node(n)) for n, _ in prog.offload))}")
    if prog.schedule is not None:
        lines += schedule_text(prog.schedule.items, g, prog.schedule.keep)
    return "\n".join(lines) + "\n"


def drawable(g: Graph) -> Graph:
    """``g`` without the edges that close recurrences (reads of an earlier or later point along a dimension
    both ends have: ``x[t - 1]``, ``w[i - 1]``), so it can be laid out by level; a node's label says when it
    reads such a value. If a cycle is left (a recurrence through a reduction), all edges inside cycles go."""
    from reflow.graph.graph import Node

    def carried(dst: str, port: str) -> bool:
        r = next(r for r in reads(g, dst) if r.port == port)
        src = g.node(r.src)
        both = set(domain(src)) & set(domain(g.node(dst)))
        return any(d in both and not (isinstance(e, Expr) and e.same(var(d)))
                   for d, e in zip(domain(src), r.index, strict=True))

    back = {(e.src, e.dst, e.dst_port) for e in g.edges if carried(e.dst, e.dst_port)}
    comp = {n: k for k, c in enumerate(sccs(g)) for n in c}
    out = _without(g, back)
    if any(len(c) > 1 for c in sccs(out)):
        back = {(e.src, e.dst, e.dst_port) for e in g.edges if comp[e.src] == comp[e.dst]}
        out = _without(g, back)
    marked = {dst for _, dst, _ in back}
    drawn = Graph(g.name)
    for n in out:
        name = label(n) + (" (+ recurrence)" if n.name in marked else "")
        drawn.add_node(Node(n.name, f"{kind(n)}: {name}"[:40], n.inputs, n.outputs, n.cost, dict(n.attrs)))
    for e in out.edges:
        drawn.connect(e.src, e.src_port, e.dst, e.dst_port, e.size)
    return drawn


def _without(g: Graph, drop: set[tuple[str, str, str]]) -> Graph:
    out = Graph(g.name)
    for n in g:
        out.add_node(n)
    for e in g.edges:
        if (e.src, e.dst, e.dst_port) not in drop:
            out.connect(e.src, e.src_port, e.dst, e.dst_port, e.size)
    return out


class Drawing:
    """What ``reflow graph FILE`` draws when FILE's ``main()`` returns ``program.drawing()``: the dependence
    graph after the passes, without the edges that close recurrences (a node's label says it has one)."""

    def __init__(self, prog: Any) -> None:
        self.prog = prog

    def graph(self) -> Graph:
        return drawable(self.prog.graph)
