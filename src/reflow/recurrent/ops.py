"""The table of tensor operations: for each op, its shape rule, its kernel and its gradient, side by side.

A node of the dependence graph computes one op at every point of its domain. The *kernel* computes it for
many points at once: each input arrives with ``nb`` leading batch axes (one per vectorized dimension, of the
full length or of length 1 where that input does not vary), followed by the op's spatial axes; spatial axis
numbers in attrs count from the first spatial axis. With ``nb = 0`` the kernel computes one point: that is
how the reference interpreter calls it, so vectorized and point-wise runs share one definition per op.

The *vjp* rule builds, with recurrent-tensor operations, the gradient of each input from the gradient ``g``
of the output (None where the input gets none). Gradients may vary over more dimensions than their input
(a parameter ``w[i]`` used at every ``(b, i, t)``); ``autodiff`` sums them over the extra dimensions, except
where a rule does that itself more cheaply (``matmul`` contracts over them with one ``tensordot``).

Op kinds (``Node.op`` is ``"rt." + kind``):

    elementwise  neg exp log tanh relu sigmoid abs sqrt sign not detach ident cast clamp
                 add sub mul div pow maximum minimum lt le gt ge eq ne and or where
    reductions   sum mean amax logsumexp softmax log_softmax discounted_sum
    linear       matmul tensordot
    indexing     take one_hot argmax
    shape        reshape unsqueeze squeeze expand sum_to
    sources      const powers symval rand          (rand: counter-based, so any vectorization agrees)
    structure    index merge udf window scan       (not in this table: see interpret.py / execute.py)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from reflow.errors import ShapeMismatch
from reflow.recurrent.symbolic import Expr, lift

if TYPE_CHECKING:
    from reflow.recurrent.tensor import RecurrentTensor as RT

Dim = Any  # int | Expr
Shape = tuple[Dim, ...]
Attrs = Mapping[str, Any]
Kernel = Callable[..., torch.Tensor]
Vjp = Callable[["Attrs", "Sequence[RT]", "RT", "RT"], "list[RT | None]"]


@dataclass(frozen=True)
class OpDef:
    """One op kind: ``shape(attrs, shapes) -> shape``, ``dtype(attrs, dtypes) -> dtype``, the kernel
    ``kernel(attrs, nb, env, *values)`` and the gradient rule (None: not differentiable)."""

    kind: str
    shape: Callable[[Attrs, list[Shape]], Shape]
    dtype: Callable[[Attrs, list[torch.dtype]], torch.dtype]
    kernel: Kernel
    vjp: Vjp | None = None
    elementwise: bool = False


OPS: dict[str, OpDef] = {}


def register(op: OpDef) -> OpDef:
    OPS[op.kind] = op
    return op


# --- shape helpers ---------------------------------------------------------------------------------------
def same_dim(a: Dim, b: Dim) -> bool:
    if isinstance(a, int) and isinstance(b, int):
        return a == b
    return lift(a).key == lift(b).key


def same_shape(a: Shape, b: Shape) -> bool:
    return len(a) == len(b) and all(same_dim(x, y) for x, y in zip(a, b, strict=True))


def broadcast(shapes: list[Shape], what: str = "operands") -> Shape:
    """Numpy broadcasting of spatial shapes whose entries may be symbolic."""
    rank = max((len(s) for s in shapes), default=0)
    out: list[Dim] = []
    for k in range(rank):
        dim: Dim = 1
        for s in shapes:
            d = s[k - rank + len(s)] if k - rank + len(s) >= 0 else 1
            if isinstance(d, int) and d == 1:
                continue
            if isinstance(dim, int) and dim == 1:
                dim = d
            elif not same_dim(dim, d):
                raise ShapeMismatch(f"{what} have shapes {' and '.join(fmt_shape(s) for s in shapes)}, "
                                    "which do not broadcast")
        out.append(dim)
    return tuple(out)


def fmt_shape(s: Shape) -> str:
    return "(" + ", ".join(str(d) for d in s) + ("," if len(s) == 1 else "") + ")"


def norm_axis(ax: int, rank: int) -> int:
    if not -rank <= ax < max(rank, 1):
        raise ShapeMismatch(f"axis {ax} is out of range for a tensor of rank {rank}")
    return ax % rank if rank else 0


def _same(attrs: Attrs, shapes: list[Shape]) -> Shape:
    return shapes[0]


def _bcast(attrs: Attrs, shapes: list[Shape]) -> Shape:
    return broadcast(shapes)


def _first(attrs: Attrs, dtypes: list[torch.dtype]) -> torch.dtype:
    return dtypes[0]


def _promote(attrs: Attrs, dtypes: list[torch.dtype]) -> torch.dtype:
    out = dtypes[0]
    for d in dtypes[1:]:
        out = torch.promote_types(out, d)
    return out


def _bool(attrs: Attrs, dtypes: list[torch.dtype]) -> torch.dtype:
    return torch.bool


def _float(attrs: Attrs, dtypes: list[torch.dtype]) -> torch.dtype:
    return dtypes[0] if dtypes and dtypes[0].is_floating_point else torch.get_default_dtype()


def _attr_dtype(attrs: Attrs, dtypes: list[torch.dtype]) -> torch.dtype:
    dtype: torch.dtype = attrs["dtype"]
    return dtype


def _sp(nb: int, ax: int) -> int:
    """A spatial axis number as an axis of a value with ``nb`` batch axes."""
    return ax + nb if ax >= 0 else ax


def _bshape(a: tuple[int, ...] | torch.Size, b: tuple[int, ...] | torch.Size) -> torch.Size:
    """Broadcast two shapes of equal rank (torch.broadcast_shapes imports sympy on first use: seconds)."""
    return torch.Size(max(x, y) if x == 1 or y == 1 else x for x, y in zip(a, b, strict=True))


def _align(nb: int, *xs: torch.Tensor) -> list[torch.Tensor]:
    """Pad spatial ranks so that elementwise broadcasting lines spatial axes up from the right."""
    rank = max(x.dim() for x in xs)
    return [x if x.dim() == rank else x.reshape(x.shape[:nb] + (1,) * (rank - x.dim()) + x.shape[nb:])
            for x in xs]


# --- elementwise -----------------------------------------------------------------------------------------
def unary(kind: str, fn: Callable[[torch.Tensor], torch.Tensor], vjp: Vjp | None,
          dtype: Callable[[Attrs, list[torch.dtype]], torch.dtype] = _first) -> None:
    register(OpDef(kind, _same, dtype, lambda attrs, nb, env, x: fn(x), vjp, elementwise=True))


def binary(kind: str, fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], vjp: Vjp | None,
           dtype: Callable[[Attrs, list[torch.dtype]], torch.dtype] = _promote) -> None:
    def kernel(attrs: Attrs, nb: int, env: Any, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        if a.dim() != b.dim():
            a, b = _align(nb, a, b)
        return fn(a, b)

    register(OpDef(kind, _bcast, dtype, kernel, vjp, elementwise=True))


unary("neg", torch.neg, lambda a, x, y, g: [-g])
unary("exp", torch.exp, lambda a, x, y, g: [g * y])
unary("log", torch.log, lambda a, x, y, g: [g / x[0]])
unary("tanh", torch.tanh, lambda a, x, y, g: [g * (1.0 - y * y)])
unary("relu", torch.relu, lambda a, x, y, g: [g * (x[0] > 0.0).cast(g.dtype)])
unary("sigmoid", torch.sigmoid, lambda a, x, y, g: [g * y * (1.0 - y)])
unary("abs", torch.abs, lambda a, x, y, g: [g * x[0].sign()])
unary("sqrt", torch.sqrt, lambda a, x, y, g: [g / (2.0 * y)])
unary("sign", torch.sign, None)
unary("not", torch.logical_not, None, _bool)
unary("detach", lambda x: x, None)
unary("ident", lambda x: x, lambda a, x, y, g: [g])
register(OpDef("cast", _same, _attr_dtype, lambda attrs, nb, env, x: x.to(attrs["dtype"]),
               lambda a, x, y, g: [g.cast(x[0].dtype) if x[0].dtype.is_floating_point else None],
               elementwise=True))
register(OpDef("clamp", _same, _first, lambda attrs, nb, env, x: x.clamp(attrs["lo"], attrs["hi"]),
               lambda a, x, y, g: [g * ((x[0] >= a["lo"]) & (x[0] <= a["hi"])).cast(g.dtype)],
               elementwise=True))

binary("add", torch.add, lambda a, x, y, g: [g.sum_to(x[0].shape), g.sum_to(x[1].shape)])
binary("sub", torch.sub, lambda a, x, y, g: [g.sum_to(x[0].shape), (-g).sum_to(x[1].shape)])
binary("mul", torch.mul, lambda a, x, y, g: [(g * x[1]).sum_to(x[0].shape), (g * x[0]).sum_to(x[1].shape)])
binary("div", torch.div, lambda a, x, y, g: [(g / x[1]).sum_to(x[0].shape),
                                             (-g * y / x[1]).sum_to(x[1].shape)])
binary("pow", torch.pow, lambda a, x, y, g: [(g * x[1] * x[0] ** (x[1] - 1.0)).sum_to(x[0].shape),
                                             (g * y * x[0].log()).sum_to(x[1].shape)])
binary("maximum", torch.maximum, lambda a, x, y, g: [(g * (x[0] >= x[1]).cast(g.dtype)).sum_to(x[0].shape),
                                                     (g * (x[0] < x[1]).cast(g.dtype)).sum_to(x[1].shape)])
binary("minimum", torch.minimum, lambda a, x, y, g: [(g * (x[0] <= x[1]).cast(g.dtype)).sum_to(x[0].shape),
                                                     (g * (x[0] > x[1]).cast(g.dtype)).sum_to(x[1].shape)])
for _k, _f in (("lt", torch.lt), ("le", torch.le), ("gt", torch.gt), ("ge", torch.ge), ("eq", torch.eq),
               ("ne", torch.ne), ("and", torch.logical_and), ("or", torch.logical_or)):
    binary(_k, _f, None, _bool)


def _where_kernel(attrs: Attrs, nb: int, env: Any, c: torch.Tensor, a: torch.Tensor,
                  b: torch.Tensor) -> torch.Tensor:
    c, a, b = _align(nb, c, a, b)
    return torch.where(c, a, b)


register(OpDef("where", lambda attrs, s: broadcast(s), lambda attrs, d: _promote(attrs, d[1:]), _where_kernel,
               lambda a, x, y, g: [None, g.where_(x[0], 0.0).sum_to(x[1].shape),
                                   g.where_(~x[0], 0.0).sum_to(x[2].shape)], elementwise=True))


# --- reductions ------------------------------------------------------------------------------------------
def _reduce_shape(attrs: Attrs, shapes: list[Shape]) -> Shape:
    s = shapes[0]
    axes = {norm_axis(a, len(s)) for a in attrs["axes"]}
    if attrs.get("keepdim"):
        return tuple(1 if k in axes else d for k, d in enumerate(s))
    return tuple(d for k, d in enumerate(s) if k not in axes)


def _axes(attrs: Attrs, nb: int) -> tuple[int, ...]:
    return tuple(_sp(nb, a) for a in attrs["axes"])


def _regrow(attrs: Attrs, g: RT, shape: Shape) -> RT:
    """A reduced gradient with its reduced axes back as size-1 axes, ready to broadcast to ``shape``."""
    if attrs.get("keepdim"):
        return g
    for a in sorted(norm_axis(a, len(shape)) for a in attrs["axes"]):
        g = g.unsqueeze(a)
    return g


def _mean_vjp(attrs: Attrs, x: Sequence[RT], y: RT, g: RT) -> list[RT | None]:
    out = _regrow(attrs, g, x[0].shape).expand(x[0].shape)
    ints = 1
    for a in attrs["axes"]:
        d = x[0].shape[norm_axis(a, len(x[0].shape))]
        if isinstance(d, int) or lift(d).const() is not None:
            ints *= int(d) if isinstance(d, int) else int(lift(d).const())  # type: ignore[arg-type]
        else:
            out = out / x[0].ctx.size_value(d, g.dtype)
    return [out / float(ints) if ints != 1 else out]


register(OpDef("sum", _reduce_shape, _first,
               lambda attrs, nb, env, x: x.sum(_axes(attrs, nb), keepdim=bool(attrs.get("keepdim"))),
               lambda a, x, y, g: [_regrow(a, g, x[0].shape).expand(x[0].shape)]))
register(OpDef("mean", _reduce_shape, _first,
               lambda attrs, nb, env, x: x.mean(_axes(attrs, nb), keepdim=bool(attrs.get("keepdim"))),
               _mean_vjp))
register(OpDef("amax", _reduce_shape, _first,
               lambda attrs, nb, env, x: x.amax(_axes(attrs, nb), keepdim=bool(attrs.get("keepdim"))),
               lambda a, x, y, g: [_regrow(a, g, x[0].shape)
                                   * (x[0] == _regrow(a, y, x[0].shape)).cast(g.dtype)]))
register(OpDef("logsumexp", _reduce_shape, _first,
               lambda attrs, nb, env, x: x.logsumexp(_axes(attrs, nb), keepdim=bool(attrs.get("keepdim"))),
               lambda a, x, y, g: [_regrow(a, g, x[0].shape) * (x[0] - _regrow(a, y, x[0].shape)).exp()]))
register(OpDef("softmax", _same, _first, lambda attrs, nb, env, x: x.softmax(_sp(nb, attrs["axis"])),
               lambda a, x, y, g: [y * (g - (g * y).sum((a["axis"],), keepdim=True))]))
register(OpDef("log_softmax", _same, _first, lambda attrs, nb, env, x: x.log_softmax(_sp(nb, attrs["axis"])),
               lambda a, x, y, g: [g - y.exp() * g.sum((a["axis"],), keepdim=True)]))


def discount_weights(gamma: float, n: int, dtype: torch.dtype, reverse: bool = False) -> torch.Tensor:
    """``gamma ** k`` for k < n (reversed: k counted from the end), computed as powers, never by division."""
    w = torch.full((n,), gamma, dtype=torch.float64).pow(torch.arange(n, dtype=torch.float64))
    return (w.flip(0) if reverse else w).to(dtype)


def _dsum_kernel(attrs: Attrs, nb: int, env: Any, x: torch.Tensor) -> torch.Tensor:
    n = x.shape[nb]
    w = discount_weights(attrs["gamma"], n, x.dtype, bool(attrs.get("reverse")))
    return (x * w.reshape((n,) + (1,) * (x.dim() - nb - 1))).sum(nb)


register(OpDef("discounted_sum", lambda attrs, s: s[0][1:], _first, _dsum_kernel,
               lambda a, x, y, g: [g.unsqueeze(0) * x[0].ctx.powers(a["gamma"], x[0].shape[0], g.dtype,
                                                                    bool(a.get("reverse")))
                                   .reshape((x[0].shape[0],) + (1,) * (len(x[0].shape) - 1))]))


# --- linear algebra --------------------------------------------------------------------------------------
def _matmul_shape(attrs: Attrs, shapes: list[Shape]) -> Shape:
    a, b = shapes
    if len(a) < 1 or len(b) != 2:
        raise ShapeMismatch(f"matmul needs x of shape (..., k) and w of shape (k, n); got {fmt_shape(a)} and "
                            f"{fmt_shape(b)}")
    if not same_dim(a[-1], b[0]):
        raise ShapeMismatch(f"matmul of shapes {fmt_shape(a)} and {fmt_shape(b)}: inner sizes {a[-1]} and "
                            f"{b[0]} differ")
    return (*a[:-1], b[1])


def _matmul_kernel(attrs: Attrs, nb: int, env: Any, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    if all(s == 1 for s in b.shape[:nb]):
        return a @ b.reshape(b.shape[nb:])
    if a.dim() - nb == 1:
        return (a.unsqueeze(-2) @ b).squeeze(-2)
    return a @ b.reshape(b.shape[:nb] + (1,) * (a.dim() - nb - 2) + b.shape[nb:])


def _matmul_vjp(attrs: Attrs, x: Sequence[RT], y: RT, g: RT) -> list[RT | None]:
    a, w = x
    ga = g.matmul(w.transpose2())
    return [ga, a.ctx.contract_over(a, g, w.domain)]


register(OpDef("matmul", _matmul_shape, _promote, _matmul_kernel, _matmul_vjp))


def _tensordot_shape(attrs: Attrs, shapes: list[Shape]) -> Shape:
    a, b, n = shapes[0], shapes[1], attrs["n"]
    if len(a) < n or len(b) < n or not all(same_dim(p, q) for p, q in zip(a[:n], b[:n], strict=True)):
        raise ShapeMismatch(f"tensordot over {n} axes of shapes {fmt_shape(a)} and {fmt_shape(b)}")
    return (*a[n:], *b[n:])


def _tensordot_kernel(attrs: Attrs, nb: int, env: Any, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    n = attrs["n"]
    batch = _bshape(a.shape[:nb], b.shape[:nb])
    a = a.expand(batch + a.shape[nb:])
    b = b.expand(batch + b.shape[nb:])
    # Contract the axes in the memory order of the larger operand: a block read as (b, t) but kept as (t, b)
    # then merges its axes without a copy (the copy of a whole episode of images is the largest tensor).
    big = a if a.numel() >= b.numel() else b
    strides = big.stride()
    order = sorted(range(nb, nb + n), key=lambda ax: -strides[ax])
    if order != list(range(nb, nb + n)):
        rest_a, rest_b = range(nb + n, a.dim()), range(nb + n, b.dim())
        a = a.permute(*range(nb), *order, *rest_a)
        b = b.permute(*range(nb), *order, *rest_b)
    k = math.prod(a.shape[nb:nb + n])
    ms, ns = a.shape[nb + n:], b.shape[nb + n:]
    p = math.prod(batch)
    a3 = a.reshape(p, k, math.prod(ms))
    b3 = b.reshape(p, k, math.prod(ns))
    out = a3[0].T @ b3[0] if p == 1 else torch.bmm(a3.transpose(1, 2), b3)
    return out.reshape(batch + ms + ns)


register(OpDef("tensordot", _tensordot_shape, _promote, _tensordot_kernel, None))


# --- indexing --------------------------------------------------------------------------------------------
def _take_kernel(attrs: Attrs, nb: int, env: Any, x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    rank = max(x.dim() - 1, idx.dim())
    if idx.dim() < rank:
        idx = idx.reshape(idx.shape[:nb] + (1,) * (rank - idx.dim()) + idx.shape[nb:])
    if x.dim() - 1 < rank:
        x = x.reshape(x.shape[:nb] + (1,) * (rank - x.dim() + 1) + x.shape[nb:])
    lead = _bshape(x.shape[:-1], idx.shape)
    return torch.gather(x.expand(lead + x.shape[-1:]), -1, idx.long().expand(lead).unsqueeze(-1)).squeeze(-1)


def _take_shape(attrs: Attrs, shapes: list[Shape]) -> Shape:
    x, idx = shapes
    return broadcast([x[:-1], idx], "take (x[..., idx])")


register(OpDef("take", _take_shape, _first, _take_kernel,
               lambda a, x, y, g: [x[1].one_hot(x[0].shape[-1], g.dtype) * g.unsqueeze(-1), None]))
register(OpDef("one_hot", lambda attrs, s: (*s[0], attrs["n"]), _attr_dtype,
               lambda attrs, nb, env, i: torch.nn.functional.one_hot(i.long(), attrs["n"])
               .to(attrs["dtype"])))
register(OpDef("argmax", lambda attrs, s: tuple(d for k, d in enumerate(s[0])
                                                if k != norm_axis(attrs["axis"], len(s[0]))),
               lambda attrs, d: torch.int64,
               lambda attrs, nb, env, x: x.argmax(_sp(nb, attrs["axis"]))))


# --- shape -----------------------------------------------------------------------------------------------
def _numel(s: Shape) -> Any:
    n: Any = 1
    for d in s:
        n = n * d
    return n


def _reshape_shape(attrs: Attrs, shapes: list[Shape]) -> Shape:
    new: Shape = attrs["shape"]
    if not same_dim(_numel(new) if all(isinstance(d, int) for d in new) else 0,
                    _numel(shapes[0]) if all(isinstance(d, int) for d in shapes[0]) else 0):
        raise ShapeMismatch(f"cannot reshape {fmt_shape(shapes[0])} to {fmt_shape(new)}")
    return new


register(OpDef("reshape", _reshape_shape, _first,
               lambda attrs, nb, env, x: x.reshape(x.shape[:nb] + tuple(attrs["shape"])),
               lambda a, x, y, g: [g.reshape(x[0].shape)]))


def _unsq_shape(attrs: Attrs, shapes: list[Shape]) -> Shape:
    s = list(shapes[0])
    ax = attrs["axis"] % (len(s) + 1)
    s.insert(ax, 1)
    return tuple(s)


def _sq_shape(attrs: Attrs, shapes: list[Shape]) -> Shape:
    s = list(shapes[0])
    ax = norm_axis(attrs["axis"], len(s))
    if not (isinstance(s[ax], int) and s[ax] == 1):
        raise ShapeMismatch(f"cannot squeeze axis {attrs['axis']} of shape {fmt_shape(shapes[0])}: its size "
                            "is "
                            f"{s[ax]}, not 1")
    del s[ax]
    return tuple(s)


def _unsq_kernel(attrs: Attrs, nb: int, env: Any, x: torch.Tensor) -> torch.Tensor:
    ax = attrs["axis"] % (x.dim() - nb + 1)
    return x.unsqueeze(nb + ax)


def _sq_kernel(attrs: Attrs, nb: int, env: Any, x: torch.Tensor) -> torch.Tensor:
    return x.squeeze(nb + attrs["axis"] % (x.dim() - nb))


register(OpDef("unsqueeze", _unsq_shape, _first, _unsq_kernel, lambda a, x, y, g: [g.squeeze(a["axis"])]))
register(OpDef("squeeze", _sq_shape, _first, _sq_kernel,
               lambda a, x, y, g: [g.unsqueeze(a["axis"] % len(x[0].shape))]))


def _expand_kernel(attrs: Attrs, nb: int, env: Any, x: torch.Tensor) -> torch.Tensor:
    shape = tuple(attrs["shape"])
    x = _align(nb, x, torch.empty((1,) * (nb + len(shape))))[0]
    return x.expand(x.shape[:nb] + shape)


def _sum_to_kernel(attrs: Attrs, nb: int, env: Any, x: torch.Tensor) -> torch.Tensor:
    shape = tuple(attrs["shape"])
    lead = x.dim() - nb - len(shape)
    if lead:
        x = x.sum(tuple(range(nb, nb + lead)))
    axes = tuple(nb + k for k, d in enumerate(shape) if d == 1 and x.shape[nb + k] != 1)
    return x.sum(axes, keepdim=True) if axes else x


def _inverse(perm: Sequence[int]) -> tuple[int, ...]:
    return tuple(sorted(range(len(perm)), key=lambda k: perm[k]))


def _permute_shape(attrs: Attrs, shapes: list[Shape]) -> Shape:
    perm = attrs["perm"]
    if sorted(perm) != list(range(len(shapes[0]))):
        raise ShapeMismatch(f"permute {perm} does not fit shape {fmt_shape(shapes[0])}")
    return tuple(shapes[0][p] for p in perm)


register(OpDef("permute", _permute_shape, _first,
               lambda attrs, nb, env, x: x.permute(*range(nb), *(nb + p for p in attrs["perm"])),
               lambda a, x, y, g: [g.permute(_inverse(a["perm"]))]))
register(OpDef("expand", lambda attrs, s: broadcast([s[0], attrs["shape"]], "expand"), _first, _expand_kernel,
               lambda a, x, y, g: [g.sum_to(x[0].shape)]))
register(OpDef("sum_to", lambda attrs, s: tuple(attrs["shape"]), _first, _sum_to_kernel,
               lambda a, x, y, g: [g.expand(x[0].shape)]))


# --- sources ---------------------------------------------------------------------------------------------
def _powers_kernel(attrs: Attrs, nb: int, env: Any) -> torch.Tensor:
    n = lift(attrs["n"]).ev(env)
    if not isinstance(n, int):
        raise ShapeMismatch(f"powers of {attrs['gamma']}: the length {attrs['n']} varies across the points "
                            "computed together")
    return discount_weights(attrs["gamma"], n, attrs["dtype"], bool(attrs.get("reverse")))


register(OpDef("powers", lambda attrs, s: (attrs["n"],), _attr_dtype, _powers_kernel))


def _symval_kernel(attrs: Attrs, nb: int, env: Any) -> torch.Tensor:
    expr: Expr = attrs["expr"]
    return torch.as_tensor(expr.ev(env)).to(attrs["dtype"])


register(OpDef("symval", lambda attrs, s: (), _attr_dtype, _symval_kernel))
register(OpDef("const", lambda attrs, s: tuple(attrs["value"].shape), lambda attrs, d: attrs["value"].dtype,
               lambda attrs, nb, env: attrs["value"]))

# A counter-based generator (splitmix64 over the point's coordinates), so a random tensor has one value per
# point whether it is computed point by point, per step or for a whole episode at once.
_MASK62 = (1 << 62) - 1


def _mix(h: torch.Tensor) -> torch.Tensor:
    h = (h ^ (h >> 31)) & _MASK62
    h = (h * 0x5851F42D4C957F2D) & _MASK62
    h = (h ^ (h >> 29)) & _MASK62
    h = (h * 0x14057B7EF767814F) & _MASK62
    return h ^ (h >> 32)


def _rand_kernel(attrs: Attrs, nb: int, env: Mapping[str, Any]) -> torch.Tensor:
    shape = tuple(attrs["shape"])
    h = torch.tensor(attrs["key"] & _MASK62, dtype=torch.int64)
    for d in attrs["domain"]:
        c = env[d]
        h = _mix(h + (torch.as_tensor(c, dtype=torch.int64) + 0x9E3779B9))
    h = h.reshape(h.shape + (1,) * len(shape))
    elem = torch.arange(math.prod(shape), dtype=torch.int64).reshape(shape)
    h = _mix(h + elem * 0x632BE59BD9B4E019)
    u = ((h >> 9) & ((1 << 53) - 1)).to(torch.float64) * (2.0 ** -53)
    return (u + 2.0 ** -54).to(attrs["dtype"])  # in (0, 1): safe under log


register(OpDef("rand", lambda attrs, s: tuple(attrs["shape"]), _attr_dtype, _rand_kernel))
