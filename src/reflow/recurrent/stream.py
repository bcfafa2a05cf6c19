"""Streaming: learning that runs a few steps behind acting, in memory that does not grow with the episode.

By default the schedule acts for a whole episode and then learns from it vectorized (fast, but every
activation of the episode is kept until the backward pass: memory grows with T). When every value the
learner needs at step t is known a bounded number of steps later (n-step returns read ``r[t:t+n]``), the
learner can instead run *inside* the acting loop, n - 1 steps behind it (a skew), and every value lives for
at most a few steps. Two rewrites of the graph make that possible, and the schedule then moves the learner's
runs into the acting loop with the skew each needs (``fuse``):

- a prefix window ``x[0:t+1].sum()`` (or with reverse discounting) becomes the running recurrence
  ``y[t] = g * y[t-1] + x[t]``, so it needs no history;
- a reduction over the whole episode of a per-step value (``loss[0:B, i, 0:T].sum()``, a weight gradient's
  ``tensordot`` over envs and steps) becomes a per-step partial reduction and an *accumulator*: a window node
  summing the partials over ``0:T``, which the executor adds up as the steps come.

A read whose reach into the future is unbounded (``x[t:T]``, a reverse scan, a mean over the episode that
feeds back into per-step values) cannot run behind acting; such runs, and everything after them, stay after
the loop, as in the default schedule.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from reflow.graph.graph import Graph, Node, Port
from reflow.recurrent.boxes import expr_range
from reflow.recurrent.conditions import TRUE
from reflow.recurrent.context import Branch, Out
from reflow.recurrent.dgraph import Read, domain, kind, outs
from reflow.recurrent.incremental import window_dim
from reflow.recurrent.schedule import Accumulate, Item, Loop, Run
from reflow.recurrent.symbolic import Expr, Lin, Slice, var


def stream_dim(g: Graph) -> str | None:
    """The time dimension: the innermost dimension an env step (a user op with a resource) loops over."""
    best: list[str] = []
    for n in g:
        if kind(n) == "udf" and n.attrs.get("resource"):
            dims = [d for d in domain(n) if d not in n.attrs.get("batched", ())]
            if len(dims) > len(best):
                best = dims
    return best[-1] if best else None


def _is_full(e: object, d: str, sizes: Mapping[str, int]) -> bool:
    return isinstance(e, Slice) and e.lo.same(Lin((), 0)) and e.hi.same(Lin((), sizes[d]))


def rewrite(g: Graph, d: str, sizes: Mapping[str, int], order: tuple[str, ...]) -> Graph:
    """The two rewrites of the module docstring, for dimension ``d`` (``order``: the context's dims)."""
    out = g.copy()
    for n in list(out):
        if kind(n) == "window" and window_dim(n) == d:
            out = _prefix_to_recurrence(out, n.name, d)
    return _split_reductions(out, d, sizes, order)


def _add(g: Graph, name: str, op: str, inputs: list[tuple[str, str]], attrs: dict[str, object]) -> None:
    g.add_node(Node(name, "rt." + op, tuple(Port(f"x{k}") for k in range(len(inputs))), (Port("out"),), 1.0,
                    {"label": name, **attrs}))
    for k, (src, port) in enumerate(inputs):
        g.connect(src, port, name, f"x{k}")


def _prefix_to_recurrence(g: Graph, name: str, d: str) -> Graph:
    n = g.node(name)
    dims = domain(n)
    (e,) = g.in_edges(name)
    src_dom = domain(g.node(e.src))
    win = n.attrs["index"][src_dom.index(d)]
    others_ok = all(isinstance(x, Lin) and x.same(var(dd))
                    for dd, x in zip(src_dom, n.attrs["index"], strict=True) if dd != d)
    hi = win.hi
    if not (others_ok and win.lo.same(Lin((), 0)) and isinstance(hi, Lin) and hi.coeffs == ((d, 1),)
            and hi.c0 in (0, 1) and (n.attrs["gamma"] == 1.0 or n.attrs["reverse"])):
        return g
    b, gamma = hi.c0, float(n.attrs["gamma"])
    (o,) = outs(n)
    same = {"domain": dims, "outs": n.attrs["outs"]}
    scalar = {"domain": (), "outs": (Out("out", (), o.dtype),)}
    # y[d] = gamma * y[d - 1] + x[d + b - 1];  y[0] = x[0] (b = 1) or 0 (b = 0)
    out = g.without([name])
    out.name = g.name
    out.add_node(Node(name, "rt.merge", (Port("x0"), Port("x1")), n.outputs, n.cost,
                      {**same, "label": n.attrs.get("label", name),
                       "branches": (Branch(var(d) == 0, tuple(var(x) for x in dims) if b == 1 else ()),
                                    Branch(TRUE, tuple(var(x) for x in dims)))}))
    _add(out, f"{name}_gamma", "const", [], {**scalar, "value": _scalar(gamma, o.dtype)})
    _add(out, f"{name}_prev", "index", [(name, "out")],
         {**same, "index": tuple(var(x) - 1 if x == d else var(x) for x in dims)})
    _add(out, f"{name}_decayed", "mul", [(f"{name}_prev", "out"), (f"{name}_gamma", "out")], same)
    _add(out, f"{name}_new", "index", [(e.src, e.src_port)],
         {**same, "index": tuple(var(x) + (b - 1) if x == d else var(x) for x in src_dom)})
    _add(out, f"{name}_step", "add", [(f"{name}_decayed", "out"), (f"{name}_new", "out")], same)
    if b == 1:
        ident = tuple(var(x) for x in src_dom)
        _add(out, f"{name}_first", "index", [(e.src, e.src_port)], {**same, "index": ident})
    else:
        _add(out, f"{name}_first", "const", [], {**scalar, "value": _scalar(0.0, o.dtype)})
    out.connect(f"{name}_first", "out", name, "x0")
    out.connect(f"{name}_step", "out", name, "x1")
    for edge in g.edges:
        if edge.src == name:
            out.connect(edge.src, edge.src_port, edge.dst, edge.dst_port, edge.size)
    return out


def _scalar(v: float, dtype: object) -> object:
    import torch

    return torch.tensor(v, dtype=dtype)  # type: ignore[arg-type]


def _full_slice_axis(g: Graph, name: str, d: str, sizes: Mapping[str, int]) -> int | None:
    """The spatial axis an index node gives to a full slice 0:T of d, if it has one (and is not over d)."""
    n = g.node(name)
    if kind(n) != "index" or d in domain(n):
        return None
    (e,) = g.in_edges(name)
    src_dom = domain(g.node(e.src))
    slices = [k for k, x in enumerate(n.attrs["index"]) if isinstance(x, Slice)]
    hits = [k for k in slices if src_dom[k] == d and _is_full(n.attrs["index"][k], d, sizes)]
    return slices.index(hits[0]) if hits else None


def _split_reductions(g: Graph, d: str, sizes: Mapping[str, int], order: tuple[str, ...]) -> Graph:
    """``sum``/``mean``/``tensordot`` over the slice axis of ``x[..., 0:T, ...]`` becomes a per-step partial
    reduction of ``x[..., t, ...]`` and an accumulator summing the partials over t (under the old name)."""
    out = g.copy()
    points: dict[str, str] = {}
    for r in list(g):
        k = kind(r)
        if k not in ("sum", "mean", "tensordot") or d in domain(r):
            continue
        ins = sorted(g.in_edges(r.name), key=lambda e: e.dst_port)
        axes = [_full_slice_axis(g, e.src, d, sizes) for e in ins]
        axis = axes[0]
        if axis is None or any(a != axis for a in axes) or not _reduces(r, axis):
            continue
        for e in ins:
            if e.src not in points:
                points[e.src] = _point_index(out, e.src, d, axis, order)
        out = _per_step(out, r, {e.dst_port: points[e.src] for e in ins}, axis, d, sizes, order)
    return out


def _point_index(g: Graph, name: str, d: str, axis: int, order: tuple[str, ...]) -> str:
    """Add ``x[..., t, ...]`` beside the index node ``name`` = ``x[..., 0:T, ...]``; returns its name."""
    idx = g.node(name)
    (e,) = g.in_edges(name)
    src_dom = domain(g.node(e.src))
    entries = tuple(var(d) if x == d and isinstance(v, Slice) else v
                    for x, v in zip(src_dom, idx.attrs["index"], strict=True))
    (io,) = outs(idx)
    shape = tuple(s for k, s in enumerate(io.shape) if k != axis)
    point = f"{name}@{d}"
    _add(g, point, "index", [(e.src, e.src_port)],
         {"domain": tuple(x for x in order if x in (*domain(idx), d)), "outs": (Out("out", shape, io.dtype),),
          "index": entries})
    return point


def _reduces(r: Node, axis: int) -> bool:
    k = kind(r)
    if k in ("sum", "mean"):
        return axis in r.attrs["axes"] and not r.attrs.get("keepdim")
    return bool(k == "tensordot" and axis < r.attrs["n"])


def _per_step(g: Graph, r: Node, feeds: dict[str, str], axis: int, d: str, sizes: Mapping[str, int],
              order: tuple[str, ...]) -> Graph:
    """Replace reducer ``r`` by a per-step reducer of ``feeds`` (port -> point index) and an accumulator over
    d under r's name."""
    k = kind(r)
    part = f"{r.name}@{d}"
    attrs = dict(r.attrs)
    rdims = tuple(x for x in order if x in (*domain(r), d))
    if k in ("sum", "mean"):
        attrs["axes"] = tuple(a - (a > axis) for a in r.attrs["axes"] if a != axis)
    else:
        attrs["n"] = r.attrs["n"] - 1
    attrs.update(domain=rdims, label=part)
    (ro,) = outs(r)
    op = r.op
    if k in ("sum", "mean") and not attrs["axes"]:
        op, attrs = "rt.ident", {x: v for x, v in attrs.items() if x not in ("axes", "keepdim")}
    out = g.without([r.name])
    out.name = g.name
    out.add_node(Node(part, op, r.inputs, r.outputs, r.cost, attrs))
    for port, src in sorted(feeds.items()):
        out.connect(src, "out", part, port)
    feed = part
    if k == "mean":  # a mean over d is the sum over d of each step's share
        feed = f"{part}_share"
        scalar = {"domain": (), "outs": (Out("out", (), ro.dtype),)}
        _add(out, f"{part}_per", "const", [], {**scalar, "value": _scalar(1.0 / sizes[d], ro.dtype)})
        _add(out, feed, "mul", [(part, ro.port), (f"{part}_per", "out")],
             {"domain": rdims, "outs": attrs["outs"]})
    whole = Slice(Lin((), 0), Lin((), sizes[d]))
    out.add_node(Node(r.name, "rt.window", (Port("x0"),), r.outputs, r.cost,
                      {"domain": domain(r), "outs": r.attrs["outs"], "label": r.attrs.get("label", r.name),
                       "index": tuple(whole if x == d else var(x) for x in rdims),
                       "gamma": 1.0, "reverse": False, "accumulate": d}))
    out.connect(feed, "out", r.name, "x0")
    for edge in g.out_edges(r.name):
        out.connect(edge.src, edge.src_port, edge.dst, edge.dst_port, edge.size)
    return out


# --- the schedule -----------------------------------------------------------------------------------------
def fuse(items: list[Item], g: Graph, d: str, regions: Mapping[str, dict[str, tuple[int, int]]],
         reads: Mapping[str, list[Read]]) -> list[Item]:
    """Move the runs after each loop over d into it, each ``skew`` steps behind, where reads allow."""
    out: list[Item] = []
    k = 0
    while k < len(items):
        it = items[k]
        if isinstance(it, Loop) and it.dim != d:
            out.append(Loop(it.dim, it.reverse, fuse(it.body, g, d, regions, reads)))
            k += 1
            continue
        if not (isinstance(it, Loop) and it.dim == d and not it.reverse):
            out.append(it)
            k += 1
            continue
        skew: dict[str, int] = {n: 0 for n in _runs(it.body)}
        after: set[str] = set()
        body = list(it.body)
        rest: list[Item] = []
        for nxt in items[k + 1:]:
            moved = _try_move(nxt, g, d, regions, reads, skew, after)
            if moved is None:
                rest.append(nxt)
                after.update(_runs([nxt]))
            else:
                body += moved
        loop = Loop(it.dim, it.reverse, body)
        _pull_in(out, loop, g, d, reads, rest)
        out.append(loop)
        out += fuse(rest, g, d, regions, reads) if rest else []
        break
    return out


def _pull_in(before: list[Item], loop: Loop, g: Graph, d: str, reads: Mapping[str, list[Read]],
             after: list[Item]) -> None:
    """Move the runs before the loop that compute a value for each step at once (random noise for all
    steps, say) and are read only inside the loop, at the step itself, into the loop: a value per step."""
    inside = set(_runs(loop.body))
    later = set(_runs(after))
    for k in range(len(before) - 1, -1, -1):
        it = before[k]
        if not isinstance(it, Run) or d not in it.vec or it.skew:
            continue
        everyone = inside | later | set(_runs(before))
        readers = [(c, r) for c in everyone for r in reads[c] if r.src == it.node]
        if not readers or any(c not in inside for c, _ in readers):
            continue
        pos = domain(g.node(it.node)).index(d)
        if not all(isinstance(e := r.index[pos], Expr) and e.same(var(d)) for _, r in readers):
            continue
        del before[k]
        loop.body.insert(0, Run(it.node, tuple(v for v in it.vec if v != d), None, 0))
        inside.add(it.node)


def _runs(items: list[Item]) -> list[str]:
    acc: list[str] = []
    for it in items:
        if isinstance(it, (Run, Accumulate)):
            acc.append(it.node)
        elif isinstance(it, Loop):
            acc += _runs(it.body)
    return acc


def _reach(e: Expr | Slice, d: str, region: dict[str, tuple[int, int]]) -> int | None:
    """How far ahead along d a read reaches (None: unbounded, e.g. a slice to the end)."""
    hi = (e.hi - 1) if isinstance(e, Slice) else e
    if isinstance(e, Slice) and not (e.hi.vars() & {d}):
        return None
    lo_hi = expr_range(hi - var(d), region)
    return max(0, lo_hi[1])


def _try_move(it: Item, g: Graph, d: str, regions: Mapping[str, dict[str, tuple[int, int]]],
              reads: Mapping[str, list[Read]], skew: dict[str, int], after: set[str]) -> list[Item] | None:
    """``it`` as items of the loop over d (with skews recorded in ``skew``), or None if it must stay after."""
    names = _runs([it])
    if isinstance(it, Loop):
        if it.dim != d or it.reverse or any(isinstance(x, Loop) for x in it.body):
            return None
        body = it.body
    else:
        body = [it]
    plan: dict[str, int] = {}
    for n in names:
        node = g.node(n)
        if d not in domain(node):
            if kind(node) == "window" and node.attrs.get("accumulate") == d:
                (r,) = reads[n]
                if r.src in skew:
                    plan[n] = skew[r.src]
                    continue
            return None
        s = 0
        for r in reads[n]:
            src = r.src
            if src in after:
                return None
            if src in skew or src in plan:
                e = r.index[domain(g.node(src)).index(d)] if d in domain(g.node(src)) else None
                if e is None:
                    continue
                reach = _reach(e, d, regions[n])
                if reach is None:
                    return None
                s = max(s, skew.get(src, plan.get(src, 0)) + reach)
        plan[n] = s
    if isinstance(it, Loop) and len(set(plan.values())) > 1:
        s = max(plan.values())
        plan = dict.fromkeys(plan, s)  # a recurrence moves as one, at its largest skew
    skew.update(plan)
    moved: list[Item] = []
    for x in body:
        if isinstance(x, Run):
            node = g.node(x.node)
            if d in domain(node):
                moved.append(Run(x.node, tuple(v for v in x.vec if v != d), None, plan[x.node]))
            else:
                moved.append(Accumulate(x.node, plan[x.node]))
        else:
            moved.append(x)
    return moved


def accumulator(node: Node) -> str | None:
    return node.attrs.get("accumulate") if kind(node) == "window" else None


__all__ = ["accumulator", "fuse", "replace", "rewrite", "stream_dim"]
