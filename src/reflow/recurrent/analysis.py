"""Demanded regions: at which points each tensor is actually needed, and the checks that follow from them.

The program needs its roots (loggers, env steps, parameters, requested outputs) everywhere in their domains.
A node needed on a box of points needs each input on the image of that box under the index it reads the input
at (a merge only on the part of the box where that branch is the first to hold). Propagating these boxes to a
fixed point gives every node its region; the executor computes nodes only there, so ``x[b, i, t - 1]`` in the
``t >= 1`` case of a definition is never evaluated at ``t = 0``.

A region that sticks out of the domain of the tensor it reads is a bug in the program: ``IndexOutOfDomain``,
or ``NoBaseCase`` when the read is part of a recursion (the missing case is its base). Index expressions are
monotone in each dimension (affine forms with min/max), so ranges over a box are exact at its corners.
"""

from __future__ import annotations

from collections.abc import Mapping

from reflow.errors import IndexOutOfDomain, NoBaseCase
from reflow.graph.graph import Graph
from reflow.recurrent.boxes import Box, box_empty, expr_range, restrict
from reflow.recurrent.dgraph import Read, domain, kind, label, reads, sccs
from reflow.recurrent.symbolic import Expr, Slice, fmt_index

Region = dict[str, tuple[int, int]]


def _subtract(a: Box, b: Box) -> Box:
    """``a`` minus ``b`` when the difference is a box; else ``a`` (an over-approximation)."""
    dims = list(a)
    inside = [d for d in dims if b[d][0] <= a[d][0] and a[d][1] <= b[d][1]]
    if len(inside) == len(dims):
        return {d: (0, 0) for d in dims} or {"": (0, 0)}
    disjoint = any(b[d][1] <= a[d][0] or a[d][1] <= b[d][0] for d in dims)
    if disjoint or len(inside) != len(dims) - 1:
        return a
    (d,) = [d for d in dims if d not in inside]
    (lo, hi), (blo, bhi) = a[d], b[d]
    out = dict(a)
    if blo <= lo:
        out[d] = (max(lo, bhi), hi)
    elif bhi >= hi:
        out[d] = (lo, min(hi, blo))
    return out


def branch_regions(g: Graph, name: str, box: Box) -> list[Box | None]:
    """For each branch of merge ``name``: the part of ``box`` where it is the first to hold (None: empty)."""
    out: list[Box | None] = []
    taken: list[Box] = []
    for br in g.node(name).attrs["branches"]:
        r = restrict(br.cond, box)
        region = dict(box) if r is None else r
        for t in taken:
            region = _subtract(region, t)
        if r is not None and not box_empty(r):
            taken.append(r)
        out.append(None if box_empty(region) else region)
    return out


def read_region(g: Graph, r: Read, box: Box) -> Box:
    """The box of ``r.src`` read when the reader is needed on ``box``."""
    src = g.node(r.src)
    out: Box = {}
    for d, e in zip(domain(src), r.index, strict=True):
        if isinstance(e, Slice):
            lo = expr_range(e.lo, box)[0]
            hi = expr_range(e.hi, box)[1]
            out[d] = (lo, max(lo, hi))
        else:
            lo, hi = expr_range(e, box)
            out[d] = (lo, hi + 1)
    return out


def demanded(g: Graph, sizes: Mapping[str, int], roots: list[str]) -> dict[str, Box]:
    """The region each node is needed on (nodes needed nowhere are absent)."""
    regions: dict[str, Box] = {}
    work: list[str] = []
    order = {n: k for k, n in enumerate(g.names)}
    for n in roots:
        regions[n] = {d: (0, sizes[d]) for d in domain(g.node(n))}
        work.append(n)
    rd = {n: reads(g, n) for n in g.names}
    while work:
        work.sort(key=order.__getitem__, reverse=True)
        name = work.pop()
        box = regions[name]
        per_read: list[Box | None]
        if kind(g.node(name)) == "merge":
            per_read = list(branch_regions(g, name, box))
        else:
            per_read = [box] * len(rd[name])
        for r, region in zip(rd[name], per_read, strict=True):
            if region is None:
                continue
            need = {d: (max(lo, 0), min(hi, sizes[d])) for d, (lo, hi) in read_region(g, r, region).items()}
            if any(lo >= hi for lo, hi in need.values()):
                continue  # empty, or wholly outside the domain (check_domains reports that)
            old = regions.get(r.src)
            new = need if old is None else {d: (min(old[d][0], need[d][0]), max(old[d][1], need[d][1]))
                                            for d in need}
            if old != new:
                regions[r.src] = new
                if r.src not in work:
                    work.append(r.src)
    return regions


def check_domains(prog: object) -> None:
    """Raise IndexOutOfDomain or NoBaseCase for the first read that leaves its source's domain."""
    g: Graph = prog.source  # type: ignore[attr-defined]
    sizes: Mapping[str, int] = prog.sizes  # type: ignore[attr-defined]
    roots: list[str] = prog.roots  # type: ignore[attr-defined]
    regions = demanded(g, sizes, roots)
    comp = {n: k for k, c in enumerate(sccs(g)) for n in c}
    for name in g.names:
        if name not in regions:
            continue
        box = regions[name]
        merge = kind(g.node(name)) == "merge"
        per_read = branch_regions(g, name, box) if merge else [box] * len(reads(g, name))
        for r, region in zip(reads(g, name), per_read, strict=True):
            if region is None:
                continue
            need = read_region(g, r, region)
            for d, (lo, hi) in need.items():
                if lo < hi and (lo < 0 or hi > sizes[d]):
                    _fail(g, name, r, d, lo if lo < 0 else hi - 1, region, sizes, comp)


def _fail(g: Graph, name: str, r: Read, d: str, bad: int, region: Box, sizes: Mapping[str, int],
          comp: dict[str, int]) -> None:
    src = g.node(r.src)
    where = ", ".join(f"{k} in [{lo}, {hi})" for k, (lo, hi) in region.items())
    what = f"{label(src)}{fmt_index(r.index)}"
    e = r.index[domain(src).index(d)]
    at = _witness(e, d, bad, region)
    text = (f"{what} is read{f' at {at}' if at else ''} (by {label(g.node(name))}, needed for "
            f"{where or 'its point'}),"
            f" which needs {d} = {bad}, outside the domain of {label(src)} ({d} in [0, {sizes[d]}))")
    if comp[name] == comp[r.src]:
        raise NoBaseCase(f"the recursive definition of {label(src)} has no base case: {text}; add a case for "
                         f"that point first, e.g. {label(src)}[{d} == {min(max(bad, 0), sizes[d] - 1)}] = "
                         "...")
    raise IndexOutOfDomain(text + "; guard the read with a conditional definition (x[cond] = ...) or change "
                           "the index")


def _witness(e: Expr | Slice, d: str, bad: int, region: Box) -> str:
    """A point of ``region`` (as text) where ``e`` reaches ``bad``, if one is easy to find."""
    import itertools

    exprs = [e.lo, e.hi - 1] if isinstance(e, Slice) else [e]
    names = sorted({v for x in exprs for v in x.vars()})
    corners = [[region[v][0], region[v][1] - 1] for v in names if v in region]
    if len(corners) != len(names):
        return ""
    for combo in itertools.product(*corners):
        env = dict(zip(names, combo, strict=True))
        if any(int(x.ev(env)) == bad for x in exprs):
            return ", ".join(f"{k}={v}" for k, v in env.items())
    return ""
