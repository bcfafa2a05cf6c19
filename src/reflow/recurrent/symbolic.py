"""Symbolic index expressions over the dimensions of a recurrent program.

A recurrent tensor is indexed by expressions in its context's dimensions (``t``, ``i``, ``b``) and bounds
(``T``, ``I``, ``B``): ``t - 1``, ``min(t + n, T)``, ``max(0, t - w + 1)``, ``i % C``. Slices ``lo:hi`` of
such expressions select ranges. Comparing expressions builds a condition (``conditions``); what a condition
says about a box of points is ``boxes``.

Expressions are immutable trees in a small normal form: every affine part is one ``Lin`` (coefficients per
variable plus a constant), so ``(t + 1) - 1`` *is* ``t``, and ``min``/``max`` of two affine forms that differ
by a constant fold to one of them. ``key`` is the structural identity used for hashing and comparison; ``==``
on an expression builds a condition (``t == 0``), as users write it, so code must never use ``==`` to compare
expressions (a condition refuses ``bool()`` to catch that mistake).

Evaluation (``ev``) takes a mapping of variable names to ints or integer torch tensors (for a whole grid of
points at once), so the interpreter and the vectorized executor share one definition.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Union

import torch

if TYPE_CHECKING:
    from reflow.recurrent.conditions import Cond

Value = Any  # an int, or an integer/boolean torch tensor when evaluated over a grid
Env = Mapping[str, Value]
IntLike = Union["Expr", int]


def lift(x: IntLike) -> Expr:
    """An expression for an int or an expression."""
    if isinstance(x, Expr):
        return x
    if isinstance(x, bool) or not isinstance(x, int):
        raise TypeError(f"an index expression needs ints or symbols, got {x!r} ({type(x).__name__})")
    return Lin((), x)


def _min(a: Value, b: Value) -> Value:
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return torch.minimum(torch.as_tensor(a), torch.as_tensor(b))
    return min(a, b)


def _max(a: Value, b: Value) -> Value:
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return torch.maximum(torch.as_tensor(a), torch.as_tensor(b))
    return max(a, b)


class Expr:
    """An integer-valued symbolic expression."""

    __slots__ = ()

    @property
    def key(self) -> tuple[Any, ...]:
        raise NotImplementedError

    def ev(self, env: Env) -> Value:
        raise NotImplementedError

    def vars(self) -> frozenset[str]:
        raise NotImplementedError

    def subs(self, env: Mapping[str, IntLike]) -> Expr:
        raise NotImplementedError

    def monotone(self, var: str) -> int:
        """+1 if non-decreasing in ``var``, -1 if non-increasing, 0 if neither (or unknown)."""
        raise NotImplementedError

    def same(self, other: IntLike) -> bool:
        return self.key == lift(other).key

    def const(self) -> int | None:
        """The value if the expression has no variables."""
        return None

    def __hash__(self) -> int:
        return hash(self.key)

    def __repr__(self) -> str:
        return str(self)

    # arithmetic ------------------------------------------------------------------------------------------
    def __add__(self, o: IntLike) -> Expr:
        return add(self, lift(o))

    def __radd__(self, o: IntLike) -> Expr:
        return add(lift(o), self)

    def __sub__(self, o: IntLike) -> Expr:
        return add(self, scale(lift(o), -1))

    def __rsub__(self, o: IntLike) -> Expr:
        return add(lift(o), scale(self, -1))

    def __neg__(self) -> Expr:
        return scale(self, -1)

    def __mul__(self, o: int) -> Expr:
        if isinstance(o, Expr):
            if (c := o.const()) is None:
                raise TypeError(f"cannot multiply symbolic {self} by symbolic {o}: index expressions are "
                                "affine")
            o = c
        return scale(self, o)

    __rmul__ = __mul__

    def __mod__(self, k: int) -> Expr:
        return Mod(self, int(k)) if self.const() is None else lift(self.const() % int(k))  # type: ignore[operator]

    def __floordiv__(self, k: int) -> Expr:
        return Div(self, int(k)) if self.const() is None else lift(self.const() // int(k))  # type: ignore[operator]

    # comparisons build conditions ---------------------------------------------------------------------
    def __eq__(self, o: object) -> Cond:  # type: ignore[override]
        return _conditions.Cmp("==", self, lift(o))  # type: ignore[arg-type]

    def __ne__(self, o: object) -> Cond:  # type: ignore[override]
        return _conditions.Cmp("!=", self, lift(o))  # type: ignore[arg-type]

    def __lt__(self, o: IntLike) -> Cond:
        return _conditions.Cmp("<", self, lift(o))

    def __le__(self, o: IntLike) -> Cond:
        return _conditions.Cmp("<=", self, lift(o))

    def __gt__(self, o: IntLike) -> Cond:
        return _conditions.Cmp("<", lift(o), self)

    def __ge__(self, o: IntLike) -> Cond:
        return _conditions.Cmp("<=", lift(o), self)


@dataclass(frozen=True, eq=False, repr=False)
class Lin(Expr):
    """``sum(c * v for v, c in coeffs) + c0``; coefficients are non-zero and sorted by variable name."""

    coeffs: tuple[tuple[str, int], ...]
    c0: int

    @property
    def key(self) -> tuple[Any, ...]:
        return ("lin", self.coeffs, self.c0)

    def ev(self, env: Env) -> Value:
        out: Value = self.c0
        for v, c in self.coeffs:
            out = out + c * env[v]
        return out

    def vars(self) -> frozenset[str]:
        return frozenset(v for v, _ in self.coeffs)

    def subs(self, env: Mapping[str, IntLike]) -> Expr:
        out: Expr = Lin((), self.c0)
        for v, c in self.coeffs:
            out = add(out, scale(lift(env[v]) if v in env else var(v), c))
        return out

    def monotone(self, v: str) -> int:
        c = dict(self.coeffs).get(v, 0)
        return 1 if c >= 0 else -1

    def const(self) -> int | None:
        return None if self.coeffs else self.c0

    def __str__(self) -> str:
        parts: list[str] = []
        for v, c in sorted(self.coeffs, key=lambda vc: (vc[1] < 0, vc[0][:1].isupper(), vc[0])):
            term = v if abs(c) == 1 else f"{abs(c)}*{v}"
            parts.append(("-" if c < 0 else "+") + term)
        if self.c0 or not parts:
            parts.append(("-" if self.c0 < 0 else "+") + str(abs(self.c0)))
        text = "".join(parts)
        return text[1:] if text.startswith("+") else text


@dataclass(frozen=True, eq=False, repr=False)
class MinMax(Expr):
    """``min(a, b)`` (``op="min"``) or ``max(a, b)``."""

    op: str
    a: Expr
    b: Expr

    @property
    def key(self) -> tuple[Any, ...]:
        return (self.op, self.a.key, self.b.key)

    def ev(self, env: Env) -> Value:
        return (_min if self.op == "min" else _max)(self.a.ev(env), self.b.ev(env))

    def vars(self) -> frozenset[str]:
        return self.a.vars() | self.b.vars()

    def subs(self, env: Mapping[str, IntLike]) -> Expr:
        return minmax(self.op, self.a.subs(env), self.b.subs(env))

    def monotone(self, v: str) -> int:
        ma, mb = self.a.monotone(v), self.b.monotone(v)
        return ma if ma == mb else (ma if v not in self.b.vars() else mb if v not in self.a.vars() else 0)

    def __str__(self) -> str:
        return f"{self.op}({self.a}, {self.b})"


@dataclass(frozen=True, eq=False, repr=False)
class Mod(Expr):
    e: Expr
    k: int

    @property
    def key(self) -> tuple[Any, ...]:
        return ("mod", self.e.key, self.k)

    def ev(self, env: Env) -> Value:
        return self.e.ev(env) % self.k

    def vars(self) -> frozenset[str]:
        return self.e.vars()

    def subs(self, env: Mapping[str, IntLike]) -> Expr:
        return self.e.subs(env) % self.k

    def monotone(self, v: str) -> int:
        return 0 if v in self.e.vars() else 1

    def __str__(self) -> str:
        compound = isinstance(self.e, Lin) and len(self.e.coeffs) + bool(self.e.c0) > 1
        return f"({self.e}) % {self.k}" if compound else f"{self.e} % {self.k}"


@dataclass(frozen=True, eq=False, repr=False)
class Div(Expr):
    e: Expr
    k: int

    @property
    def key(self) -> tuple[Any, ...]:
        return ("div", self.e.key, self.k)

    def ev(self, env: Env) -> Value:
        return self.e.ev(env) // self.k

    def vars(self) -> frozenset[str]:
        return self.e.vars()

    def subs(self, env: Mapping[str, IntLike]) -> Expr:
        return self.e.subs(env) // self.k

    def monotone(self, v: str) -> int:
        return self.e.monotone(v) if self.k > 0 else -self.e.monotone(v)

    def __str__(self) -> str:
        return f"({self.e}) // {self.k}"


@dataclass(frozen=True, eq=False, repr=False)
class Sum(Expr):
    """``a + b`` where neither folds into the other (e.g. ``min(t + n, T) - max(0, t - w)``)."""

    a: Expr
    b: Expr

    @property
    def key(self) -> tuple[Any, ...]:
        return ("sum", self.a.key, self.b.key)

    def ev(self, env: Env) -> Value:
        return self.a.ev(env) + self.b.ev(env)

    def vars(self) -> frozenset[str]:
        return self.a.vars() | self.b.vars()

    def subs(self, env: Mapping[str, IntLike]) -> Expr:
        return add(self.a.subs(env), self.b.subs(env))

    def monotone(self, v: str) -> int:
        ma, mb = self.a.monotone(v), self.b.monotone(v)
        if v not in self.b.vars():
            return ma
        if v not in self.a.vars():
            return mb
        return ma if ma == mb else 0

    def __str__(self) -> str:
        b = str(self.b)
        return f"{self.a} - {b[1:]}" if b.startswith("-") else f"{self.a} + {b}"


def var(name: str) -> Lin:
    return Lin(((name, 1),), 0)


def scale(e: Expr, k: int) -> Expr:
    if k == 0:
        return Lin((), 0)
    if isinstance(e, Lin):
        return Lin(tuple((v, c * k) for v, c in e.coeffs), e.c0 * k)
    if isinstance(e, MinMax) and k == -1:
        return minmax("max" if e.op == "min" else "min", scale(e.a, -1), scale(e.b, -1))
    if isinstance(e, MinMax):
        op = e.op if k > 0 else ("max" if e.op == "min" else "min")
        return minmax(op, scale(e.a, k), scale(e.b, k))
    if isinstance(e, Sum):
        return add(scale(e.a, k), scale(e.b, k))
    if k == 1:
        return e
    raise TypeError(f"cannot scale {e} by {k}: only affine parts of index expressions may be scaled")


def add(a: Expr, b: Expr) -> Expr:
    if isinstance(a, Lin) and isinstance(b, Lin):
        coeffs = dict(a.coeffs)
        for v, c in b.coeffs:
            coeffs[v] = coeffs.get(v, 0) + c
        return Lin(tuple(sorted((v, c) for v, c in coeffs.items() if c)), a.c0 + b.c0)
    # push a constant into min/max: min(x, y) + 1 == min(x + 1, y + 1)
    if isinstance(b, Lin) and not b.coeffs and isinstance(a, MinMax):
        return minmax(a.op, add(a.a, b), add(a.b, b))
    if isinstance(a, Lin) and not a.coeffs and isinstance(b, MinMax):
        return minmax(b.op, add(b.a, a), add(b.b, a))
    if isinstance(b, Lin) and isinstance(a, MinMax):
        return minmax(a.op, add(a.a, b), add(a.b, b))
    if isinstance(a, Lin) and isinstance(b, MinMax):
        return minmax(b.op, add(b.a, a), add(b.b, a))
    if isinstance(b, Lin) and not b.coeffs and b.c0 == 0:
        return a
    if isinstance(a, Lin) and not a.coeffs and a.c0 == 0:
        return b
    if isinstance(b, Lin) and isinstance(a, Sum):
        return Sum(a.a, add(a.b, b)) if isinstance(a.b, Lin) else Sum(a, b)
    return Sum(a, b)


def minmax(op: str, a: IntLike, b: IntLike) -> Expr:
    ea, eb = lift(a), lift(b)
    if ea.key == eb.key:
        return ea
    if isinstance(ea, Lin) and isinstance(eb, Lin) and ea.coeffs == eb.coeffs:  # differ by a constant
        lo, hi = (ea, eb) if ea.c0 <= eb.c0 else (eb, ea)
        return lo if op == "min" else hi
    return MinMax(op, ea, eb)


def smin(a: IntLike, b: IntLike) -> Expr:
    """``min`` of index expressions (``min(t + n, T)``)."""
    return minmax("min", a, b)


def smax(a: IntLike, b: IntLike) -> Expr:
    """``max`` of index expressions (``max(0, t - w + 1)``)."""
    return minmax("max", a, b)


# ---------------------------------------------------------------------------------------------------------
# Slices
# ---------------------------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class Slice:
    """The range ``lo:hi`` (``hi`` exclusive) of one dimension."""

    lo: Expr
    hi: Expr

    @property
    def key(self) -> tuple[Any, ...]:
        return ("slice", self.lo.key, self.hi.key)

    def vars(self) -> frozenset[str]:
        return self.lo.vars() | self.hi.vars()

    def subs(self, env: Mapping[str, IntLike]) -> Slice:
        return Slice(self.lo.subs(env), self.hi.subs(env))

    def size(self) -> Expr:
        return self.hi - self.lo

    def __str__(self) -> str:
        return f"{self.lo}:{self.hi}"

    __repr__ = __str__


Entry = Expr | Slice


def entry_key(e: Entry) -> tuple[Any, ...]:
    return e.key


def fmt_index(entries: Iterable[Entry]) -> str:
    return "[" + ", ".join(str(e) for e in entries) + "]"


from reflow.recurrent import conditions as _conditions  # noqa: E402  (conditions build on expressions)
