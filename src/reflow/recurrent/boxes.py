"""Boxes of points: what a condition says about one variable, and the range of an expression over a box.

The scheduler and the executor reason about runs over rectangular regions of a domain; these answer, for such
a region, where a conditional definition's case holds (when its condition is a conjunction of comparisons
with constants) and which indices an index expression reaches.
"""

from __future__ import annotations

from reflow.recurrent.conditions import Cmp, Cond, Const, Junction
from reflow.recurrent.symbolic import Expr, Lin

Box = dict[str, tuple[int, int]]  # var -> [lo, hi)



def restrict(cond: Cond, box: Box) -> Box | None:
    """The smallest box inside ``box`` holding every point of ``box`` where ``cond`` holds, if ``cond`` is a
    conjunction of comparisons of one variable with constants (after substitution); else None (unknown).
    An empty box has some ``lo >= hi``."""
    out = dict(box)
    parts = cond.parts if isinstance(cond, Junction) and cond.op == "and" else (cond,)
    for p in parts:
        if isinstance(p, Const):
            if not p.value:
                return {v: (0, 0) for v in out} or {"": (0, 0)}
            continue
        if not isinstance(p, Cmp) or p.op == "!=":
            return None
        diff = p.a - p.b  # a op b  <=>  diff op 0
        if not isinstance(diff, Lin) or len(diff.coeffs) != 1 or diff.coeffs[0][0] not in out:
            return None
        (v, c), k = diff.coeffs[0], diff.c0
        lo, hi = out[v]
        if abs(c) != 1:
            return None
        # c*v + k op 0
        if p.op == "==":
            x = -k * c
            lo, hi = max(lo, x), min(hi, x + 1)
        elif c == 1:  # v < -k  (or <=)
            hi = min(hi, -k if p.op == "<" else -k + 1)
        else:  # -v + k < 0  ->  v > k  (or >=)
            lo = max(lo, k + 1 if p.op == "<" else k)
        out[v] = (lo, hi)
    return out


def box_empty(box: Box) -> bool:
    return any(lo >= hi for lo, hi in box.values())


def expr_range(e: Expr, box: Box) -> tuple[int, int]:
    """Inclusive [min, max] of ``e`` over the non-empty ``box`` (exact for expressions monotone in each
    variable: affine forms with min/max; others are bounded by evaluating every corner, which is exact for
    them too when they are monotone, and otherwise a best effort)."""
    names = sorted(e.vars())
    missing = [v for v in names if v not in box]
    if missing:
        raise KeyError(f"expression {e} uses {missing}, which have no range")
    lo_env: dict[str, int] = {}
    hi_env: dict[str, int] = {}
    exact = True
    for v in names:
        m = e.monotone(v)
        a, b = box[v][0], box[v][1] - 1
        if m >= 0:
            lo_env[v], hi_env[v] = a, b
        else:
            lo_env[v], hi_env[v] = b, a
        exact = exact and m != 0
    if exact:
        return int(e.ev(lo_env)), int(e.ev(hi_env))
    vals = []
    grid = [[]]  # type: list[list[tuple[str, int]]]
    for v in names:
        a, b = box[v][0], box[v][1] - 1
        if b - a <= 64:
            choices = list(range(a, b + 1))
        else:
            choices = sorted({a, b, *range(a, a + 32), *range(b - 31, b + 1)})
        grid = [[*g, (v, x)] for g in grid for x in choices]
        if len(grid) > 100_000:
            grid = grid[:100_000]
    for g in grid:
        vals.append(int(e.ev(dict(g))))
    return min(vals), max(vals)
