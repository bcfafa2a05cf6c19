"""Symbolic reverse-mode differentiation over the dependence graph (``loss.backward()``).

The gradient of a loss ``L[i]`` with respect to a parameter ``w[i]`` is itself a recurrent tensor, built from
the ops' vjp rules (``ops.OPS``) and from *transposing* the index each input is read at:

    read at          contribution to the input at point p
    d                the gradient at p
    d + c            the gradient at p - c, where that point exists (else 0)
    c (a constant)   the gradient where p_d == c (else 0)
    lo:hi (fixed)    element p_d - lo of the gradient's slice axis, where lo <= p_d < hi
    (absent)         the gradient summed over that dimension (the input was broadcast over it)

A window ``x[t:T]``, ``x[t:min(t+n, T)]``, ``x[0:t+1]``, ``x[max(0, t-w+1):t+1]`` reduced by ``sum``, ``mean``
or ``discounted_sum`` transposes to the mirrored window of the gradient (the points whose windows hold p),
again a reduction: the adjoint of a discounted return ``G[t] = sum_k gamma^k r[t+k]`` is the forward
discounted sum ``sum_{q <= p} gamma^(p-q) g[q]``. Parameters are leaves: the gradient stops at ``w[i]`` and
does not flow into the optimizer step that defined it. Cycles (an RNN's ``h[t-1]``) become recurrences of
adjoints running the other way, defined through placeholders.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import torch

from reflow.errors import NotDifferentiable, RecurrentError
from reflow.graph.graph import Graph
from reflow.recurrent.conditions import FALSE, TRUE, Cond, Const, conj, disj
from reflow.recurrent.dgraph import Read, domain, kind, label, reads, sccs
from reflow.recurrent.ops import OPS, same_shape
from reflow.recurrent.symbolic import Expr, Lin, MinMax, Slice, fmt_index, var

if TYPE_CHECKING:
    from reflow.recurrent.context import Context
    from reflow.recurrent.tensor import RecurrentTensor as RT

WINDOW_REDUCERS = ("sum", "mean", "discounted_sum")


def _differentiable(g: Graph, name: str) -> bool:
    n = g.node(name)
    k = kind(n)
    if k in ("udf", "rand", "detach", "const", "symval", "powers"):
        return False
    if k in ("index", "merge"):
        return True
    return OPS[k].vjp is not None


def _float_out(g: Graph, name: str, port: str = "out") -> bool:
    n = g.node(name)
    return bool(next(o for o in n.attrs["outs"] if o.port == port).dtype.is_floating_point)


def active_nodes(ctx: Context, loss: RT) -> set[str]:
    """Nodes on a differentiable path from a parameter to the loss."""
    g = ctx.graph
    params = set(ctx.params)
    fwd: set[str] = set()
    stack = list(params)
    while stack:
        n = stack.pop()
        for s in g.successors(n):
            if s not in fwd and s not in params and _differentiable(g, s) and _float_out(g, s):
                fwd.add(s)
                stack.append(s)
    bwd: set[str] = set()
    stack = [loss.node]
    while stack:
        n = stack.pop()
        if n in bwd:
            continue
        bwd.add(n)
        if n not in params:
            stack.extend(g.predecessors(n))
    return (fwd & bwd) | ({loss.node} & fwd)


def backward(loss: RT) -> None:
    """Set ``ctx.grads[param]`` for every parameter of ``loss``'s context.

    Each gradient contribution carries its *support*, a condition outside of which it is zero (the branch
    ``t >= 1`` of a definition reads its value at ``t - 1``, so that value's gradient is zero at t = T-1).
    Gradients computed from it are defined only there, so they never read a value the program does not
    define (``x[t + 1]`` at t = T-1)."""
    ctx, g = loss.ctx, loss.ctx.graph
    if loss.shape:
        raise RecurrentError(f"backward() needs a loss with no spatial axes; {loss.label} has shape "
                             f"{loss.shape_str} (reduce it first, e.g. loss.sum() or x[0:B, i, 0:T].mean())")
    active = active_nodes(ctx, loss)
    params = set(ctx.params)
    support = supports(ctx, loss, active)
    contribs: Contribs = {}
    placeholders: dict[str, RT] = {}
    handled: set[str] = set()  # window index nodes whose reducer transposed them directly
    order = [c for c in sccs(g) if any(n in active or n in params for n in c)]
    for comp in reversed(order):
        live = [n for n in comp if n in active]
        cyclic = len(comp) > 1 or comp[0] in g.successors(comp[0])
        if cyclic:
            for n in live:
                t = ctx.tensor(n)
                placeholders[n] = ctx.placeholder(t.shape, t.dtype, t.domain, name=f"d_{label(g.node(n))}")
        for n in live:
            if n in handled:
                continue
            gn = placeholders[n] if cyclic else _total(ctx, n, contribs, loss)
            if gn is None:
                continue
            _propagate(ctx, n, gn, support.get(n, TRUE), active, params, contribs, handled)
        if cyclic:
            for n in live:
                total = _total(ctx, n, contribs, loss)
                placeholders[n][True] = total if total is not None else 0.0
    for p in ctx.params:
        t = ctx.tensor(p)
        total = _total(ctx, p, contribs, loss)
        grad = total if total is not None else ctx.const(0.0, t.dtype)
        ctx.grads[p] = grad.named(f"grad_{label(g.node(p))}")


Contribs = dict[str, list["RT"]]


def supports(ctx: Context, loss: RT, active: set[str]) -> dict[str, Cond]:
    """Where each active node is read at all on the way to the loss (a condition over its points): the
    union, over its readers, of where they read it. Iterated to a fixed point; TRUE if that does not come."""
    g = ctx.graph
    out: dict[str, Cond] = {n: FALSE for n in active}
    out[loss.node] = TRUE
    users: dict[str, list[tuple[str, Read]]] = {n: [] for n in active}
    for c in [*active, loss.node]:
        for r in reads(g, c):
            if r.src in users and r.src != loss.node:
                users[r.src].append((c, r))
    for _ in range(8):
        changed = False
        for n in active:
            if n == loss.node:
                continue
            new = disj(*(_translate(conj(out.get(c, TRUE), r.cond), r, domain(g.node(n)), ctx)
                         for c, r in users[n]))
            if new.key != out[n].key:
                out[n], changed = new, True
        if not changed:
            return out
    return {n: TRUE for n in active}


def _total(ctx: Context, n: str, contribs: Contribs, loss: RT) -> RT | None:
    if n == loss.node:
        return ctx.const(1.0, loss.dtype)
    cs = contribs.get(n)
    if not cs:
        return None
    out = cs[0]
    for c in cs[1:]:
        out = out + c
    t = ctx.tensor(n)
    if not same_shape(out.shape, t.shape):
        out = out.expand(t.shape)
    return out


def guard(x: RT, support: Cond) -> RT:
    """``x`` where ``support`` holds, 0 elsewhere (so x is computed only there)."""
    if isinstance(support, Const) or not x.ctx.dims_of(support) <= set(x.domain):
        return x
    z = x.ctx.placeholder(x.shape, x.dtype, x.domain, name=f"{x.label}_where")
    z[support] = x
    z[True] = 0.0
    return z


def _propagate(ctx: Context, name: str, gout: RT, support: Cond, active: set[str], params: set[str],
               contribs: Contribs, handled: set[str]) -> None:
    """Add the contributions of ``name``'s gradient ``gout`` (zero outside ``support``) to its inputs'."""
    g = ctx.graph
    n = g.node(name)
    k = kind(n)
    rds = reads(g, name)

    def wanted(r: Read) -> bool:
        return (r.src in active or r.src in params) and _float_out(g, r.src, r.src_port)

    if k == "merge":
        for r in rds:
            if not wanted(r):
                continue
            z = ctx.placeholder(gout.shape, gout.dtype, domain(n), name=f"d_{label(n)}_case{r.branch}")
            for j in range(r.branch):
                z[n.attrs["branches"][j].cond] = 0.0
            z[r.cond] = gout
            z[True] = 0.0
            _add(ctx, r, z, contribs)
        return
    if k == "index":
        if wanted(rds[0]):
            _add(ctx, rds[0], gout, contribs)
        return
    inputs = [ctx.tensor(r.src, r.src_port) for r in rds]
    if k in WINDOW_REDUCERS and _is_window(g, rds[0].src) and rds[0].src in active:
        _window_vjp(ctx, n.attrs, k, inputs[0], gout, contribs, active, params, handled)
        return
    vjp = OPS[k].vjp
    if vjp is None:
        raise NotDifferentiable(f"cannot differentiate through {label(n)} ({k}); detach() its input")
    grads = vjp(n.attrs, inputs, ctx.tensor(name), gout)
    for r, gi in zip(rds, grads, strict=True):
        if gi is not None and wanted(r):
            _add(ctx, r, guard(gi, support), contribs)


def _add(ctx: Context, r: Read, gread: RT, contribs: Contribs) -> None:
    contribs.setdefault(r.src, []).append(transpose(ctx, r, gread))


def reduce_dims(x: RT, dims: tuple[str, ...]) -> RT:
    """``x`` summed over the dimensions ``dims`` of its domain."""
    dims = tuple(d for d in x.domain if d in dims)
    if not dims:
        return x
    ctx = x.ctx
    idx = tuple(Slice(Lin((), 0), ctx.bound(d)) if d in dims else var(d) for d in x.domain)
    return x[idx].sum(tuple(range(len(dims))))


def transpose(ctx: Context, r: Read, gread: RT) -> RT:
    """The contribution to ``r.src``'s gradient of the gradient ``gread`` of the value read by ``r``."""
    g = ctx.graph
    src = g.node(r.src)
    sdom = domain(src)
    what = f"{label(src)}{fmt_index(r.index)}"
    used: dict[str, str] = {}  # reader dimension -> source dimension reading it
    for d, e in zip(sdom, r.index, strict=True):
        for v in e.vars():
            if v in ctx.bound_of:
                if v in used:
                    raise NotDifferentiable(f"cannot differentiate through {what}: {v} indexes two "
                                            "dimensions")
                used[v] = d
    gsum = reduce_dims(gread, tuple(d for d in gread.domain if d not in used))
    # slice axes of fixed ranges: pick the element of the gradient's slice axis at this point
    conds = []
    taken: set[str] = set()
    for d, e in zip(sdom, r.index, strict=True):
        if isinstance(e, Slice):
            if e.vars() & set(ctx.bound_of):
                raise NotDifferentiable(f"cannot differentiate through the window {what} except as the "
                                        "input of a "
                                        "sum, mean or discounted_sum")
            moved = gsum.permute(_to_last(len(gsum.shape), 0))
            gsum = moved.take(ctx.symval(var(d) - e.lo, dtype=_int()))
            taken.add(d)
            if not (e.lo.const() == 0 and e.hi.same(ctx.bound(d))):
                conds += [var(d) >= e.lo, var(d) < e.hi]
    read: list[Expr] = []
    for u in gsum.domain:
        if u in taken:
            read.append(var(u))
            continue
        d = used[u]
        e = r.index[sdom.index(d)]
        if not isinstance(e, Lin) or dict(e.coeffs).get(u) != 1 or len(e.coeffs) != 1:
            raise NotDifferentiable(f"cannot differentiate through {what}: entry {e} for {d} is not {u} "
                                    "plus a "
                                    "constant (detach() the read if it needs no gradient)")
        c = e.c0
        if d != u:
            raise NotDifferentiable(f"cannot differentiate through {what}: {d} is read at {e}, another "
                                    "dimension")
        read.append(var(d) - c)
        if c:
            conds += [var(d) - c >= 0, var(d) - c < ctx.bound(d)]
    for d, e in zip(sdom, r.index, strict=True):
        if isinstance(e, Expr) and not (e.vars() & set(ctx.bound_of)):
            conds.append(var(d) == e)
    contrib = gsum[tuple(read)] if read else gsum
    if not conds:
        return contrib
    z = ctx.placeholder(contrib.shape, contrib.dtype, sdom, name=f"d_{label(src)}_at")
    z[conj(*conds)] = contrib
    z[True] = 0.0
    return z


def _translate(where: Cond, r: Read, sdom: tuple[str, ...], ctx: Context) -> Cond:
    """``where`` (over the reader's points) as a condition over the points of the source the reader reads:
    with ``x[t - 1]`` read where t >= 1, x is read where t + 1 >= 1 and t + 1 < T. TRUE where it cannot be
    said simply (slices, sums over dimensions)."""
    if isinstance(where, Const) and not where.value:
        return FALSE
    env: dict[str, Expr] = {}
    valid: list[Cond] = []
    for d, e in zip(sdom, r.index, strict=True):
        if isinstance(e, Slice) or not isinstance(e, Lin):
            return TRUE
        if len(e.coeffs) == 1 and e.coeffs[0] == (d, 1):
            env[d] = var(d) - e.c0
            if e.c0:
                valid += [var(d) - e.c0 >= 0, var(d) - e.c0 < ctx.bound(d)]
        elif e.coeffs:
            return TRUE
    if not ctx.dims_of(where) <= set(env):
        return TRUE
    return conj(where.subs(env), *valid)


def _int() -> torch.dtype:
    return torch.int64


def _to_last(rank: int, axis: int) -> tuple[int, ...]:
    return (*tuple(k for k in range(rank) if k != axis), axis)


# --- windows ---------------------------------------------------------------------------------------------
def _is_window(g: Graph, name: str) -> bool:
    n = g.node(name)
    return kind(n) == "index" and any(isinstance(e, Slice) and e.vars() for e in n.attrs["index"]) and any(
        isinstance(e, Slice) and (e.vars() & set(domain(n))) for e in n.attrs["index"])


def _offset(e: Expr, d: str, bound: Expr) -> tuple[str, int | None]:
    """A window end: ``("var", a)`` for d + a (possibly clamped with min/max), or ``("const", None)``."""
    if isinstance(e, Lin):
        if not (e.vars() & {d}):
            return ("const", None)
        if e.coeffs == ((d, 1),):
            return ("var", e.c0)
    if isinstance(e, MinMax):
        for a, b in ((e.a, e.b), (e.b, e.a)):
            if isinstance(a, Lin) and a.coeffs == ((d, 1),) and not (b.vars() & {d}):
                return ("var", a.c0)
    raise NotDifferentiable(f"cannot differentiate through a window ending at {e}: supported ends are {d} "
                            "plus a "
                            f"constant (optionally clamped with min/max) or a constant")


def _window_vjp(ctx: Context, attrs: Mapping[str, Any], k: str, x_read: RT, gout: RT, contribs: Contribs,
                active: set[str], params: set[str], handled: set[str]) -> None:
    g = ctx.graph
    idx_node = g.node(x_read.node)
    (r,) = reads(g, x_read.node)
    others = [s for s in g.successors(x_read.node) if s in active]
    if len(others) > 1:
        raise NotDifferentiable(f"the window {label(g.node(r.src))}{fmt_index(r.index)} is used twice; give "
                                "each "
                                "use its own slice")
    sl = [(pos, e) for pos, e in enumerate(r.index) if isinstance(e, Slice)]
    if len(sl) != 1:
        raise NotDifferentiable(f"cannot differentiate through {label(g.node(r.src))}{fmt_index(r.index)}: a "
                                "window can be differentiated only as the one slice of its read")
    handled.add(x_read.node)
    if r.src not in active and r.src not in params:
        return
    pos, win = sl[0]
    src = g.node(r.src)
    d = domain(src)[pos]
    if not all(isinstance(e, Lin) and e.same(var(dd)) for dd, e in zip(domain(src), r.index, strict=True)
               if dd != d):
        raise NotDifferentiable(f"cannot differentiate through {label(src)}{fmt_index(r.index)}: besides the "
                                "window, every entry must be its dimension")
    if d not in domain(idx_node):
        raise NotDifferentiable(f"window over {d} read outside {d}")
    axes: tuple[int, ...] = tuple(attrs.get("axes", (0,)))
    gq = gout
    if k in ("sum", "mean"):
        if 0 not in axes:
            raise NotDifferentiable("a window's reduction must include its slice axis 0")
        keep = bool(attrs.get("keepdim"))
        if keep:
            gq = gq.squeeze(0)
        for ax in sorted(x - 1 for x in axes if x != 0):
            if not keep:
                gq = gq.unsqueeze(ax)
        if not same_shape(gq.shape, x_read.shape[1:]):
            gq = gq.expand(x_read.shape[1:])
        if k == "mean":
            gq = gq / ctx.symval(win.hi - win.lo, gq.dtype)
    gamma = float(attrs.get("gamma", 1.0))
    reverse = bool(attrs.get("reverse"))
    bound = ctx.bound(d)
    lo_kind, a = _offset(win.lo, d, bound)
    hi_kind, b = _offset(win.hi, d, bound)
    p = var(d)
    # q ranges over [qmin, qmax]: qmax = largest q with lo(q) <= p; qmin = smallest q with hi(q) > p
    from reflow.recurrent.symbolic import smax, smin

    qmax = p - a if lo_kind == "var" and a is not None else bound - 1
    qmin = p + 1 - b if hi_kind == "var" and b is not None else Lin((), 0)
    qlo, qhi = smax(qmin, 0), smin(qmax + 1, bound)
    idx = tuple(Slice(qlo, qhi) if dd == d else var(dd) for dd in gq.domain) if d in gq.domain else None
    if idx is None:  # the gradient does not vary over d: every point of the window gets the same
        raise NotDifferentiable(f"window gradient over {d} that does not vary with {d}")
    win_g = gq[idx]
    if gamma == 1.0:
        contrib = win_g.sum(0)
    elif not reverse and lo_kind == "var" and a is not None and a >= 0 and isinstance(win.lo, Lin):
        contrib = win_g.discounted_sum(gamma, reverse=True)
    elif reverse and hi_kind == "var" and b is not None and b <= 1 and isinstance(win.hi, Lin):
        contrib = win_g.discounted_sum(gamma)
    elif not reverse and lo_kind == "const":
        contrib = win_g.sum(0) * (ctx.const(gamma, gq.dtype) ** ctx.symval(p - win.lo, gq.dtype))
    else:
        raise NotDifferentiable(f"cannot differentiate the discounted sum over "
                                f"{label(src)}{fmt_index(r.index)}")
    contribs.setdefault(r.src, []).append(contrib)


def contract_over(a: RT, gy: RT, target: tuple[str, ...]) -> RT:
    """``sum over the points outside target of a^T gy``: a matmul's weight gradient in one tensordot."""
    extra_a = tuple(d for d in a.domain if d not in target)
    extra_g = tuple(d for d in gy.domain if d not in target)
    a = reduce_dims(a, tuple(d for d in extra_a if d not in extra_g))
    gy = reduce_dims(gy, tuple(d for d in extra_g if d not in extra_a))
    common = tuple(d for d in a.domain if d not in target and d in gy.domain)
    ctx = a.ctx

    def gather(x: RT) -> RT:
        if not common:
            return x
        return x[tuple(Slice(Lin((), 0), ctx.bound(d)) if d in common else var(d) for d in x.domain)]

    aa, gg = gather(a), gather(gy)
    lead = len(a.shape) - 1
    if len(gy.shape) - 1 != lead:
        raise NotDifferentiable(f"matmul gradient: {a.label} {a.shape_str} and gradient {gy.shape_str} "
                                "disagree")
    return ctx.apply("tensordot", [aa, gg], n=len(common) + lead)
