"""RecurrentTensor: a tensor over a symbolic domain (``b, i, t``) with a spatial shape at every point.

Indexing follows the symbolic basis: ``x[b, i, t - 1]`` is x one step earlier, ``x[0:B, i, 0:T]`` gathers
every env and step of iteration i into spatial axes ``(B, T)`` (slices are prepended to the spatial shape, in
dimension order), ``x[b, i, t:T]`` is the (dynamically sized) rest of the episode. Entries left out are the
dimension itself. Assignment defines a placeholder case by case; the first case whose condition holds wins:

    obs[b, i, 0] = env.reset()             # condition t == 0
    obs[b, i, t + 1] = next_obs            # condition 1 <= t (read next_obs at t - 1)
    ret[t == T - 1] = r                    # any condition
    ret[True] = r + gamma * ret[b, i, t + 1]

Every operation adds a node to the context's dependence graph; nothing is computed until the program runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from reflow.errors import RecurrentError, ShapeMismatch
from reflow.recurrent.conditions import Cond, conj, lift_cond
from reflow.recurrent.context import Branch, Context
from reflow.recurrent.ops import Shape, broadcast, fmt_shape, norm_axis, same_shape
from reflow.recurrent.symbolic import Entry, Expr, Lin, Slice, fmt_index, lift, var

Operand = Any  # a RecurrentTensor, a number, or an index expression


class RecurrentTensor:
    """A handle on one output of a node of the dependence graph."""

    __slots__ = ("ctx", "domain", "dtype", "node", "port", "shape")
    __array_priority__ = 1000  # numpy scalars defer to our operators
    ctx: Context
    node: str
    port: str
    domain: tuple[str, ...]
    shape: Shape
    dtype: torch.dtype

    def __init__(self, ctx: Context, node: str, port: str, domain: tuple[str, ...], shape: Shape,
                 dtype: torch.dtype) -> None:
        self.ctx, self.node, self.port = ctx, node, port
        self.domain, self.shape, self.dtype = domain, tuple(shape), dtype

    # -- description -------------------------------------------------------------------------------------
    @property
    def label(self) -> str:
        base = str(self.ctx.graph.node(self.node).attrs.get("label", self.node))
        return base if self.port == "out" else f"{base}.{self.port}"

    @property
    def shape_str(self) -> str:
        return fmt_shape(self.shape)

    def __repr__(self) -> str:
        return (f"RecurrentTensor({self.label}, domain=({', '.join(self.domain)}), shape={self.shape_str}, "
                f"dtype={str(self.dtype).replace('torch.', '')})")

    def named(self, label: str) -> RecurrentTensor:
        """Give this tensor a name for error messages and ``explain`` (returns self)."""
        g = self.ctx.graph
        n = g.node(self.node)
        from reflow.graph.graph import Node

        g.replace_node(Node(n.name, n.op, n.inputs, n.outputs, n.cost, {**n.attrs, "label": label}))
        return self

    # -- indexing ----------------------------------------------------------------------------------------
    def _entries(self, idx: Any) -> tuple[Entry, ...]:
        items = list(idx) if isinstance(idx, tuple) else [idx]
        if any(it is Ellipsis for it in items):
            k = items.index(Ellipsis)
            fill = len(self.domain) - (len(items) - 1)
            items = items[:k] + [var(d) for d in self.domain[k:k + fill]] + items[k + 1:]
        if len(items) > len(self.domain):
            raise RecurrentError(f"{self.label} has domain ({', '.join(self.domain)}) but is indexed with "
                                 f"{len(items)} entries")
        items += [var(d) for d in self.domain[len(items):]]
        out: list[Entry] = []
        for d, it in zip(self.domain, items, strict=True):
            if isinstance(it, Slice):
                out.append(it)
            elif isinstance(it, slice):
                if it.step not in (None, 1):
                    raise RecurrentError(f"{self.label}[...]: slices with a step are not supported")
                lo = lift(0 if it.start is None else it.start)
                hi = self.ctx.bound(d) if it.stop is None else lift(it.stop)
                out.append(Slice(lo, hi))
            elif isinstance(it, (Expr, int)) and not isinstance(it, bool):
                out.append(lift(it))
            else:
                raise RecurrentError(f"{self.label}: index entry {it!r} for dimension {d} is not an index "
                                     "expression, an int or a slice")
        return tuple(out)

    def __getitem__(self, idx: Any) -> RecurrentTensor:
        entries = self._entries(idx)
        if all(isinstance(e, Expr) and e.same(var(d)) for d, e in zip(self.domain, entries, strict=True)):
            return self
        dims: set[str] = set()
        for e in entries:
            for v in e.vars():
                if v not in self.ctx.bound_of and v not in self.ctx.bound_of.values():
                    raise RecurrentError(f"{self.label}{fmt_index(entries)}: {v!r} is neither a dimension "
                                         "nor a "
                                         "bound of this context")
            dims |= self.ctx.dims_of(e)
        sizes: list[Any] = []
        for e in entries:
            if isinstance(e, Slice):
                size = e.size()
                sizes.append(size if size.const() is None else size.const())
        shape = (*sizes, *self.shape)
        node = self.ctx.add("index", [self], tuple(dims),
                            [self.ctx_out(shape)], None, index=entries)
        return self.ctx.tensor(node)

    def ctx_out(self, shape: Shape) -> Any:
        from reflow.recurrent.context import Out

        return Out("out", shape, self.dtype)

    def __setitem__(self, idx: Any, value: Operand) -> None:
        if isinstance(idx, (Cond, bool)):
            self.define(lift_cond(idx), value)
            return
        entries = self._entries(idx)
        conds: list[Cond] = []
        shift: dict[str, Expr] = {}
        for d, e in zip(self.domain, entries, strict=True):
            bad = RecurrentError(f"cannot assign to {self.label}{fmt_index(entries)}: entry {e} for {d} must "
                                 f"be {d}, {d} plus or minus a constant, or a constant")
            if isinstance(e, Slice) or not isinstance(e, Lin):
                raise bad
            if not e.coeffs:
                conds.append(var(d) == e.c0)  # the value is read at this point, where d == c
            elif e.coeffs == ((d, 1),):
                shift[d] = var(d) - e.c0
                if e.c0 > 0:
                    conds.append(var(d) >= e.c0)
                elif e.c0 < 0:
                    conds.append(var(d) < self.ctx.bound(d) + e.c0)
            else:
                raise bad
        self.define(conj(*conds), value, shift, fmt_index(entries))

    def define(self, cond: Cond, value: Operand, shift: dict[str, Expr] | None = None,
               where: str | None = None) -> None:
        """Add a case to this placeholder: where ``cond`` holds, its value is ``value`` (read at
        ``shift``)."""
        ctx, g = self.ctx, self.ctx.graph
        node = g.node(self.node)
        where = where or f"[{cond}]"
        if node.op != "rt.merge":
            raise RecurrentError(f"cannot assign to {self.label}{where}: it is not a placeholder; make it "
                                 "with ctx.placeholder(shape, dtype, domain) and define it case by case")
        v = ctx.lift(value, like=self)
        shift = shift or {}
        index: list[Entry] = []
        for d in v.domain:
            if d not in self.domain:
                raise ShapeMismatch(f"cannot assign {v.label} (domain {', '.join(v.domain)}) to "
                                    f"{self.label}{where}: {self.label} has no dimension {d}")
            index.append(shift.get(d, var(d)))
        try:
            shape = broadcast([v.shape, self.shape], "value and target")
        except ShapeMismatch:
            shape = ()
        if not same_shape(shape, self.shape):
            raise ShapeMismatch(f"cannot assign {v.label} of shape {v.shape_str} to {self.label}{where}, "
                                "whose "
                                f"shape is {self.shape_str}")
        if not same_shape(v.shape, self.shape):
            v = v.expand(self.shape)
        if v.dtype != self.dtype:
            v = v.cast(self.dtype)
        port = f"x{len(node.inputs)}"
        from reflow.graph.graph import Node, Port

        branches = (*node.attrs["branches"], Branch(cond, tuple(index)))
        g.replace_node(Node(node.name, node.op, (*node.inputs, Port(port)), node.outputs, node.cost,
                            {**node.attrs, "branches": branches}))
        g.connect(v.node, v.port, node.name, port)

    # -- elementwise arithmetic --------------------------------------------------------------------------
    def _bin(self, kind: str, other: Operand, reverse: bool = False) -> RecurrentTensor:
        o = self.ctx.lift(other, like=self)
        a, b = (o, self) if reverse else (self, o)
        return self.ctx.apply(kind, [a, b])

    def __add__(self, o: Operand) -> RecurrentTensor:
        return self._bin("add", o)

    def __radd__(self, o: Operand) -> RecurrentTensor:
        return self._bin("add", o, True)

    def __sub__(self, o: Operand) -> RecurrentTensor:
        return self._bin("sub", o)

    def __rsub__(self, o: Operand) -> RecurrentTensor:
        return self._bin("sub", o, True)

    def __mul__(self, o: Operand) -> RecurrentTensor:
        return self._bin("mul", o)

    def __rmul__(self, o: Operand) -> RecurrentTensor:
        return self._bin("mul", o, True)

    def __truediv__(self, o: Operand) -> RecurrentTensor:
        return self._bin("div", o)

    def __rtruediv__(self, o: Operand) -> RecurrentTensor:
        return self._bin("div", o, True)

    def __pow__(self, o: Operand) -> RecurrentTensor:
        if isinstance(o, (int, float)) and o == 2:
            return self * self
        return self._bin("pow", o)

    def __rpow__(self, o: Operand) -> RecurrentTensor:
        return self._bin("pow", o, True)

    def __neg__(self) -> RecurrentTensor:
        return self.ctx.apply("neg", [self])

    def __matmul__(self, o: RecurrentTensor) -> RecurrentTensor:
        return self.matmul(o)

    def __lt__(self, o: Operand) -> RecurrentTensor:
        return self._bin("lt", o)

    def __le__(self, o: Operand) -> RecurrentTensor:
        return self._bin("le", o)

    def __gt__(self, o: Operand) -> RecurrentTensor:
        return self._bin("gt", o)

    def __ge__(self, o: Operand) -> RecurrentTensor:
        return self._bin("ge", o)

    def __eq__(self, o: Operand) -> RecurrentTensor:  # type: ignore[override]
        return self._bin("eq", o)

    def __ne__(self, o: Operand) -> RecurrentTensor:  # type: ignore[override]
        return self._bin("ne", o)

    def __and__(self, o: Operand) -> RecurrentTensor:
        return self._bin("and", o)

    def __or__(self, o: Operand) -> RecurrentTensor:
        return self._bin("or", o)

    def __invert__(self) -> RecurrentTensor:
        return self.ctx.apply("not", [self])

    __hash__ = object.__hash__

    def __bool__(self) -> bool:
        raise RecurrentError(f"{self.label} is symbolic and has no truth value; use where()/masks instead")

    def _un(self, kind: str, **attrs: Any) -> RecurrentTensor:
        return self.ctx.apply(kind, [self], **attrs)

    def neg(self) -> RecurrentTensor:
        return self._un("neg")

    def exp(self) -> RecurrentTensor:
        return self._un("exp")

    def log(self) -> RecurrentTensor:
        return self._un("log")

    def tanh(self) -> RecurrentTensor:
        return self._un("tanh")

    def relu(self) -> RecurrentTensor:
        return self._un("relu")

    def sigmoid(self) -> RecurrentTensor:
        return self._un("sigmoid")

    def abs(self) -> RecurrentTensor:
        return self._un("abs")

    def sqrt(self) -> RecurrentTensor:
        return self._un("sqrt")

    def sign(self) -> RecurrentTensor:
        return self._un("sign")

    def detach(self) -> RecurrentTensor:
        """The same values with no gradient flowing back through them."""
        return self._un("detach")

    def ident(self) -> RecurrentTensor:
        return self._un("ident")

    def cast(self, dtype: torch.dtype) -> RecurrentTensor:
        return self if dtype == self.dtype else self._un("cast", dtype=dtype)

    def as_float(self) -> RecurrentTensor:
        """This tensor in the context's floating-point dtype (masks from comparisons, counts)."""
        return self.cast(self.ctx.dtype)

    def clamp(self, lo: float, hi: float) -> RecurrentTensor:
        return self._un("clamp", lo=float(lo), hi=float(hi))

    def maximum(self, o: Operand) -> RecurrentTensor:
        return self._bin("maximum", o)

    def minimum(self, o: Operand) -> RecurrentTensor:
        return self._bin("minimum", o)

    def where_(self, cond: RecurrentTensor, other: Operand) -> RecurrentTensor:
        """``self`` where ``cond`` holds, else ``other``."""
        return self.ctx.apply("where", [cond, self, self.ctx.lift(other, like=self)])

    # -- reductions over spatial axes ---------------------------------------------------------------------
    def _axes(self, axes: int | Sequence[int] | None) -> tuple[int, ...]:
        if axes is None:
            return tuple(range(len(self.shape)))
        return tuple(norm_axis(a, len(self.shape)) for a in ((axes,) if isinstance(axes, int) else axes))

    def sum(self, axes: int | Sequence[int] | None = None, keepdim: bool = False) -> RecurrentTensor:
        ax = self._axes(axes)
        return self if not ax else self._un("sum", axes=ax, keepdim=keepdim)

    def mean(self, axes: int | Sequence[int] | None = None, keepdim: bool = False) -> RecurrentTensor:
        ax = self._axes(axes)
        return self if not ax else self._un("mean", axes=ax, keepdim=keepdim)

    def amax(self, axes: int | Sequence[int] | None = None, keepdim: bool = False) -> RecurrentTensor:
        return self._un("amax", axes=self._axes(axes), keepdim=keepdim)

    def logsumexp(self, axis: int = -1, keepdim: bool = False) -> RecurrentTensor:
        return self._un("logsumexp", axes=self._axes(axis), keepdim=keepdim)

    def var(self, axes: int | Sequence[int] | None = None) -> RecurrentTensor:
        mu = self.mean(axes, keepdim=True)
        return ((self - mu) * (self - mu)).mean(axes)

    def std(self, axes: int | Sequence[int] | None = None) -> RecurrentTensor:
        return self.var(axes).sqrt()

    def softmax(self, axis: int = -1) -> RecurrentTensor:
        return self._un("softmax", axis=axis)

    def log_softmax(self, axis: int = -1) -> RecurrentTensor:
        return self._un("log_softmax", axis=axis)

    def discounted_sum(self, gamma: float, reverse: bool = False) -> RecurrentTensor:
        """``sum_k gamma**k * self[k]`` over spatial axis 0 (the axis a slice ``t:T`` adds);
        ``reverse`` counts k from the end."""
        if not self.shape:
            raise ShapeMismatch(f"discounted_sum of {self.label}: it has no spatial axis; slice a dimension "
                                "first (x[b, i, t:T].discounted_sum(gamma))")
        return self._un("discounted_sum", gamma=float(gamma), reverse=reverse)

    # -- linear algebra, indexing, shape -----------------------------------------------------------------
    def matmul(self, w: RecurrentTensor) -> RecurrentTensor:
        return self.ctx.apply("matmul", [self, w])

    def transpose2(self) -> RecurrentTensor:
        n = len(self.shape)
        return self.permute((*tuple(range(n - 2)), n - 1, n - 2))

    def permute(self, perm: Sequence[int]) -> RecurrentTensor:
        return self._un("permute", perm=tuple(perm))

    def take(self, idx: RecurrentTensor) -> RecurrentTensor:
        """``self[..., idx]`` along the last spatial axis (e.g. the log-probability of the taken action)."""
        return self.ctx.apply("take", [self, idx])

    def one_hot(self, n: int, dtype: torch.dtype | None = None) -> RecurrentTensor:
        return self._un("one_hot", n=int(n), dtype=dtype or self.ctx.dtype)

    def argmax(self, axis: int = -1) -> RecurrentTensor:
        return self._un("argmax", axis=axis)

    def reshape(self, shape: Sequence[Any]) -> RecurrentTensor:
        shape = tuple(shape)
        return self if same_shape(shape, self.shape) else self._un("reshape", shape=shape)

    def unsqueeze(self, axis: int = 0) -> RecurrentTensor:
        return self._un("unsqueeze", axis=axis)

    def squeeze(self, axis: int = 0) -> RecurrentTensor:
        return self._un("squeeze", axis=axis)

    def expand(self, shape: Sequence[Any]) -> RecurrentTensor:
        return self if same_shape(tuple(shape), self.shape) else self._un("expand", shape=tuple(shape))

    def sum_to(self, shape: Sequence[Any]) -> RecurrentTensor:
        """Sum over the axes broadcasting added, back to ``shape`` (for gradients)."""
        return self if same_shape(tuple(shape), self.shape) else self._un("sum_to", shape=tuple(shape))

    # -- gradients ---------------------------------------------------------------------------------------
    def backward(self) -> None:
        """Gradients of this scalar loss with respect to every parameter (``param.grad``)."""
        from reflow.recurrent.autodiff import backward

        backward(self)

    @property
    def grad(self) -> RecurrentTensor:
        try:
            return self.ctx.grads[self.node]
        except KeyError:
            raise RecurrentError(f"{self.label} has no gradient: call loss.backward() first (only "
                                 "parameters made with ctx.param get one)") from None
