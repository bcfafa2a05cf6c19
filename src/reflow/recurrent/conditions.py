"""Conditions over the dimensions (and bounds) of a recurrent program: ``t == 0``, ``(t > 0) & (t < T - 1)``.

They choose between the branches of a conditional definition (the first that holds wins). Like expressions
they are immutable trees with a structural ``key``; ``&``, ``|`` and ``~`` fold constants and flatten, and a
condition refuses ``bool()`` so that code comparing expressions with ``==`` fails loudly.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from reflow.recurrent.symbolic import Env, Expr, IntLike, Value


class Cond:
    """A boolean condition over the dimensions (and bounds) of a program."""

    __slots__ = ()

    @property
    def key(self) -> tuple[Any, ...]:
        raise NotImplementedError

    def ev(self, env: Env) -> Value:
        raise NotImplementedError

    def vars(self) -> frozenset[str]:
        raise NotImplementedError

    def subs(self, env: Mapping[str, IntLike]) -> Cond:
        raise NotImplementedError

    def __bool__(self) -> bool:
        raise TypeError(f"the symbolic condition {self} has no truth value; use it to index a recurrent "
                        "tensor (x[t == 0] = ...), or compare expressions with .same()")

    def __and__(self, o: Cond | bool) -> Cond:
        return conj(self, lift_cond(o))

    __rand__ = __and__

    def __or__(self, o: Cond | bool) -> Cond:
        return disj(self, lift_cond(o))

    __ror__ = __or__

    def __invert__(self) -> Cond:
        return negate(self)

    def __hash__(self) -> int:
        return hash(self.key)

    def __repr__(self) -> str:
        return str(self)


@dataclass(frozen=True, eq=False, repr=False)
class Const(Cond):
    value: bool

    @property
    def key(self) -> tuple[Any, ...]:
        return ("const", self.value)

    def ev(self, env: Env) -> Value:
        return self.value

    def vars(self) -> frozenset[str]:
        return frozenset()

    def subs(self, env: Mapping[str, IntLike]) -> Cond:
        return self

    def __str__(self) -> str:
        return "true" if self.value else "false"


TRUE, FALSE = Const(True), Const(False)

_CMP = {"==": lambda a, b: a == b, "!=": lambda a, b: a != b, "<": lambda a, b: a < b,
        "<=": lambda a, b: a <= b}


@dataclass(frozen=True, eq=False, repr=False)
class Cmp(Cond):
    op: str
    a: Expr
    b: Expr

    @property
    def key(self) -> tuple[Any, ...]:
        return ("cmp", self.op, self.a.key, self.b.key)

    def ev(self, env: Env) -> Value:
        return _CMP[self.op](self.a.ev(env), self.b.ev(env))

    def vars(self) -> frozenset[str]:
        return self.a.vars() | self.b.vars()

    def subs(self, env: Mapping[str, IntLike]) -> Cond:
        out = Cmp(self.op, self.a.subs(env), self.b.subs(env))
        if not out.vars():
            return Const(bool(out.ev({})))
        return out

    def __str__(self) -> str:
        return f"{self.a} {self.op} {self.b}"


@dataclass(frozen=True, eq=False, repr=False)
class Junction(Cond):
    """``&`` (``op="and"``) or ``|`` of several conditions."""

    op: str
    parts: tuple[Cond, ...]

    @property
    def key(self) -> tuple[Any, ...]:
        return (self.op, tuple(p.key for p in self.parts))

    def ev(self, env: Env) -> Value:
        vals = [p.ev(env) for p in self.parts]
        out = vals[0]
        for v in vals[1:]:
            out = (out & v) if self.op == "and" else (out | v)
        return out

    def vars(self) -> frozenset[str]:
        return frozenset().union(*(p.vars() for p in self.parts))

    def subs(self, env: Mapping[str, IntLike]) -> Cond:
        parts = [p.subs(env) for p in self.parts]
        return conj(*parts) if self.op == "and" else disj(*parts)

    def __str__(self) -> str:
        sep = " & " if self.op == "and" else " | "
        return sep.join(f"({p})" if isinstance(p, Junction) else str(p) for p in self.parts)


@dataclass(frozen=True, eq=False, repr=False)
class Not(Cond):
    c: Cond

    @property
    def key(self) -> tuple[Any, ...]:
        return ("not", self.c.key)

    def ev(self, env: Env) -> Value:
        v = self.c.ev(env)
        return ~v if isinstance(v, torch.Tensor) else not v

    def vars(self) -> frozenset[str]:
        return self.c.vars()

    def subs(self, env: Mapping[str, IntLike]) -> Cond:
        return negate(self.c.subs(env))

    def __str__(self) -> str:
        return f"~({self.c})"


def lift_cond(c: Cond | bool) -> Cond:
    if isinstance(c, Cond):
        return c
    if isinstance(c, bool):
        return TRUE if c else FALSE
    raise TypeError(f"expected a condition (e.g. t == 0) or a bool, got {c!r}")


def conj(*cs: Cond) -> Cond:
    parts: list[Cond] = []
    for c in cs:
        if isinstance(c, Const):
            if not c.value:
                return FALSE
            continue
        parts.extend(c.parts if isinstance(c, Junction) and c.op == "and" else [c])
    uniq = list({p.key: p for p in parts}.values())
    return TRUE if not uniq else uniq[0] if len(uniq) == 1 else Junction("and", tuple(uniq))


def disj(*cs: Cond) -> Cond:
    parts: list[Cond] = []
    for c in cs:
        if isinstance(c, Const):
            if c.value:
                return TRUE
            continue
        parts.extend(c.parts if isinstance(c, Junction) and c.op == "or" else [c])
    uniq = list({p.key: p for p in parts}.values())
    return FALSE if not uniq else uniq[0] if len(uniq) == 1 else Junction("or", tuple(uniq))


def negate(c: Cond) -> Cond:
    if isinstance(c, Const):
        return FALSE if c.value else TRUE
    if isinstance(c, Not):
        return c.c
    if isinstance(c, Cmp):
        if c.op == "<":
            return Cmp("<=", c.b, c.a)
        if c.op == "<=":
            return Cmp("<", c.b, c.a)
        return Cmp("!=" if c.op == "==" else "==", c.a, c.b)
    if isinstance(c, Junction):
        parts = [negate(p) for p in c.parts]
        return disj(*parts) if c.op == "and" else conj(*parts)
    return Not(c)
