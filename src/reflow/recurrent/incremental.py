"""Incrementalization: a reduction over a window of a dimension becomes one ``window`` node that the executor
computes as a running accumulation or a scan, instead of re-reducing a slice at every point.

``r[b, i, t:T].discounted_sum(g)`` reads, at each t, the rest of the episode: O(T^2) work done point by
point. Rewritten as ``window(r; t:T, gamma=g)`` it is the reverse scan ``G[t] = r[t] + g * G[t + 1]``,
computed for a whole episode at once by log-depth doubling (``scan``); ``x[0:t+1].sum()`` is a prefix sum
(a running accumulation); a window of bounded length (``t:min(t+n, T)``) is n shifted adds. Discount factors
are only ever multiplied (``g ** k`` built by repeated squaring), never divided out, so long episodes neither
overflow nor lose precision (dividing by ``g ** t`` after a cumulative sum would, at T = 10,000).

The ``window`` node means exactly what the pair meant: ``sum_k w_k x[lo(p) + k]`` over the window, with
``w_k = g ** k`` counted from the window's start (or from its end, ``reverse``); its kernel on one point is
``discounted_sum``'s, so the reference interpreter runs the rewritten graph unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

import torch

from reflow.graph.graph import Graph, Node, Port
from reflow.recurrent.context import Out
from reflow.recurrent.dgraph import domain, kind, outs
from reflow.recurrent.ops import OPS, _dsum_kernel, register
from reflow.recurrent.symbolic import Expr, Lin, Slice

register(replace(OPS["discounted_sum"], kind="window"))


def window_dim(node: Node) -> str | None:
    """The dimension an index node slices with bounds that move with the point (its one window), if any."""
    if kind(node) not in ("index", "window"):
        return None
    dims = domain(node)
    found = None
    for e in node.attrs["index"]:
        if isinstance(e, Slice) and e.vars() & set(dims):
            if found is not None:
                return None
            found = e
    if found is None:
        return None
    moving = sorted(found.vars() & set(dims))
    return moving[0] if len(moving) == 1 else None


def _fusable(g: Graph, reducer: Node) -> Node | None:
    """The window index node ``reducer`` reduces over its axis 0, if the pair can become one window node."""
    (e,) = g.in_edges(reducer.name)
    src = g.node(e.src)
    if kind(src) != "index" or window_dim(src) is None or len(g.out_edges(src.name)) != 1:
        return None
    first = next(k for k, x in enumerate(src.attrs["index"]) if isinstance(x, Slice))
    if any(isinstance(x, Slice) for x in src.attrs["index"][first + 1:]):
        return None  # only a single slice, at spatial axis 0
    if not isinstance(src.attrs["index"][first], Slice) or not src.attrs["index"][first].vars():
        return None
    k = kind(reducer)
    if k == "discounted_sum":
        return src
    if k == "sum" and 0 in reducer.attrs["axes"] and not reducer.attrs.get("keepdim"):
        return src
    return None


def incrementalize(g: Graph, sizes: Mapping[str, int]) -> Graph:
    """A copy of ``g`` with every (window index, sum / discounted_sum) pair fused into a window node."""
    pairs: dict[str, Node] = {}
    for n in g:
        if kind(n) in ("sum", "discounted_sum") and len(g.in_edges(n.name)) == 1:
            src = _fusable(g, n)
            if src is not None:
                pairs[n.name] = src
    if not pairs:
        return g
    fused_inputs = {src.name for src in pairs.values()}
    out = Graph(g.name)
    rest: dict[str, Node] = {}  # reducer -> sum over its remaining axes, after the window node
    for n in g:
        if n.name in fused_inputs:
            continue
        if n.name not in pairs:
            out.add_node(n)
            continue
        src = pairs[n.name]
        (so,) = outs(src)
        attrs = {"domain": domain(n), "label": n.attrs.get("label", n.name), "index": src.attrs["index"],
                 "gamma": float(n.attrs.get("gamma", 1.0)), "reverse": bool(n.attrs.get("reverse", False))}
        other = tuple(a - 1 for a in n.attrs.get("axes", (0,)) if a != 0)
        if other:  # sum over axis 0 and others: window first, then the others
            inner = f"{n.name}_window"
            attrs["outs"] = (Out("out", tuple(so.shape[1:]), so.dtype),)
            out.add_node(Node(inner, "rt.window", (Port("x0"),), (Port("out"),), 1.0, attrs))
            rest[n.name] = replace(n, inputs=(Port("x0"),), attrs={**n.attrs, "axes": other})
            out.add_node(rest[n.name])
        else:
            attrs["outs"] = n.attrs["outs"]
            out.add_node(Node(n.name, "rt.window", (Port("x0"),), n.outputs, n.cost, attrs))
    for e in g.edges:
        if e.dst in fused_inputs:
            continue
        if e.src in fused_inputs:
            reducer = next(r for r, s in pairs.items() if s.name == e.src)
            (into,) = g.in_edges(e.src)
            target = f"{reducer}_window" if reducer in rest else reducer
            out.connect(into.src, into.src_port, target, "x0", into.size)
            if reducer in rest:
                out.connect(target, "out", reducer, "x0")
            continue
        out.connect(e.src, e.src_port, e.dst, e.dst_port, e.size)
    return out


# --- kernels: a window reduction over a whole range of points at once -------------------------------------
def linear_scan(x: torch.Tensor, gamma: float, reverse: bool = False) -> torch.Tensor:
    """``z[j] = x[j] + gamma * z[j - 1]`` along axis 0 (``z[j + 1]`` if ``reverse``), by log-depth doubling:
    after round k, ``z[j]`` sums ``gamma**m * x[j - m]`` for m < 2**k. Only powers of gamma are used."""
    z = x.flip(0) if reverse else x
    n = z.shape[0]
    step, g = 1, gamma
    while step < n:
        shifted = torch.zeros_like(z)
        shifted[step:] = z[:-step]
        z = z + g * shifted if g != 1.0 else z + shifted
        step, g = step * 2, g * g
    return z.flip(0) if reverse else z


def window_kernel(x: torch.Tensor, x0: int, win: Slice, d: str, env: dict[str, object], p0: int, p1: int,
                  gamma: float, reverse: bool) -> torch.Tensor:
    """``y[p] = sum over j in [lo(p), hi(p)) of w * x[j]`` for p in [p0, p1), with x given along axis 0 from
    index x0; w = gamma ** (j - lo(p)) (``reverse``: gamma ** (hi(p) - 1 - j)). Returns axis 0 of length
    p1 - p0."""
    n = x.shape[0]
    lo_e, hi_e = win.lo, win.hi
    lo_c = _offset(lo_e, d)
    hi_c = _offset(hi_e, d)
    tail = x.shape[1:]
    ps = torch.arange(p0, p1)
    if n == 0:  # every window is empty
        return torch.zeros((p1 - p0, *tail), dtype=x.dtype)

    def at(z: torch.Tensor, j: torch.Tensor) -> torch.Tensor:
        """z[j - x0], 0 where j is outside z."""
        m = z.shape[0]
        if m == 0:
            return torch.zeros((len(j), *tail), dtype=z.dtype)
        ok = (j >= x0) & (j < x0 + m)
        v = z[(j - x0).clamp(0, m - 1)]
        return torch.where(ok.reshape((-1,) + (1,) * len(tail)), v, torch.zeros((), dtype=z.dtype))

    # suffix windows [p + a, H) with weights from their start: a reverse scan
    if lo_c is not None and hi_c is None and not hi_e.vars() - set(env) and not reverse:
        hi = int(hi_e.ev(env))
        z = linear_scan(x[: max(hi - x0, 0)], gamma, reverse=True) if hi > x0 else x[:0]
        return at(z, ps + lo_c)
    # prefix windows [L, p + b) with weights from their end: a forward scan
    if hi_c is not None and lo_c is None and not lo_e.vars() - set(env) and (reverse or gamma == 1.0):
        lo = int(lo_e.ev(env))
        z = linear_scan(x[max(lo - x0, 0):], gamma)
        start = max(lo, x0)
        return torch.where((ps + hi_c - 1 >= lo).reshape((-1,) + (1,) * len(tail)),
                           at_offset(z, ps + hi_c - 1, start), torch.zeros((), dtype=x.dtype))
    # windows of bounded length: one shifted, masked, weighted add per position in the window
    lo_p = torch.as_tensor(lo_e.ev({**env, d: ps}))
    hi_p = torch.as_tensor(hi_e.ev({**env, d: ps}))
    width = int((hi_p - lo_p).max().item()) if len(ps) else 0
    out = torch.zeros((p1 - p0, *tail), dtype=x.dtype)
    shape = (-1,) + (1,) * len(tail)
    for k in range(max(width, 0)):
        j = lo_p + k
        ok = j < hi_p
        w = gamma ** k
        v = at(x, j)
        if reverse:
            wt = torch.full((len(ps),), gamma, dtype=torch.float64).pow((hi_p - 1 - j).clamp(min=0).double())
            v = v * wt.to(x.dtype).reshape(shape)
        elif w != 1.0:
            v = v * w
        out = out + torch.where(ok.reshape(shape), v, torch.zeros((), dtype=x.dtype))
    return out


def at_offset(z: torch.Tensor, j: torch.Tensor, start: int) -> torch.Tensor:
    n = z.shape[0]
    return z[(j - start).clamp(0, max(n - 1, 0))]


def _offset(e: Expr, d: str) -> int | None:
    """a, if ``e`` is ``d + a``."""
    if isinstance(e, Lin) and e.coeffs == ((d, 1),):
        return e.c0
    return None


__all__ = ["_dsum_kernel", "incrementalize", "linear_scan", "window_dim", "window_kernel"]
