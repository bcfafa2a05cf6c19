"""The reference interpreter: a recurrent program evaluated point by point, straight from its definition.

This is the oracle every optimization is tested against. It knows nothing of schedules or vectorization: to
know a tensor at a point it computes the points it reads (memoised), using each op's kernel on one point.
Evaluation is demand-driven over an explicit stack, so a recurrence over 10,000 timesteps needs no deep
Python recursion, and a tensor that needs itself at the same point is reported rather than looping.

Two things are not point-wise by nature, and the interpreter honours them as declared:
- a user-defined op ``batched`` over dimensions (an env bank steps all its envs at once) is called once for
  all values of those dimensions;
- calls of ops that share a ``resource`` (an env bank's reset and step) happen in the lexicographic order of
  their points, as the resource's state requires: before a call, every earlier call of that resource is made.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from typing import Any

import torch

from reflow.errors import IndexOutOfDomain, NoBaseCase, RecurrentError
from reflow.graph.graph import Graph
from reflow.recurrent.dgraph import Read, domain, kind, label, outs, reads
from reflow.recurrent.ops import OPS
from reflow.recurrent.symbolic import Expr, Slice, fmt_index

Point = tuple[Any, ...]  # ints; None at a batched dimension
Key = tuple[str, Point]


class Interpreter:
    """Evaluates a (bounds-substituted) dependence graph point by point."""

    def __init__(self, g: Graph, sizes: Mapping[str, int],
                 resources: Mapping[str, Any] | None = None) -> None:
        self.g = g
        self.sizes = dict(sizes)
        self.memo: dict[Key, dict[str, torch.Tensor]] = {}
        self.reads = {n: reads(g, n) for n in g.names}
        self.resources = resources or {}
        self._calls: dict[str, list[Key]] = {}  # resource -> every call, in order
        self._call_pos: dict[Key, tuple[str, int]] = {}
        for n in g:
            if kind(n) == "udf" and n.attrs.get("resource"):
                self._calls.setdefault(n.attrs["resource"], [])
        for res in self._calls:
            self._calls[res] = self._order_calls(res)
            for pos, key in enumerate(self._calls[res]):
                self._call_pos[key] = (res, pos)

    # -- points ------------------------------------------------------------------------------------------
    def points(self, node: str) -> Iterable[Point]:
        """Every point of ``node``'s domain (None at batched dimensions), in lexicographic order."""
        n = self.g.node(node)
        batched = set(n.attrs.get("batched", ()))
        ranges = [[None] if d in batched else range(self.sizes[d]) for d in domain(n)]
        return itertools.product(*ranges)

    def _order_calls(self, resource: str) -> list[Key]:
        nodes = [n.name for n in self.g if kind(n) == "udf" and n.attrs.get("resource") == resource]
        dims = [d for d in self.sizes]
        keyed: list[tuple[tuple[int, ...], int, Key]] = []
        for rank, name in enumerate(nodes):
            dom = domain(self.g.node(name))
            for p in self.points(name):
                coords = dict(zip(dom, p, strict=True))
                order = tuple(-1 if coords.get(d) is None else coords[d] for d in dims)
                keyed.append((order, rank, (name, p)))
        keyed.sort(key=lambda x: (x[0], x[1]))
        return [k for _, _, k in keyed]

    def _key(self, node: str, point: Point) -> Key:
        n = self.g.node(node)
        batched = n.attrs.get("batched", ())
        if batched:
            point = tuple(None if d in batched else c for d, c in zip(domain(n), point, strict=True))
        return (node, point)

    # -- what a point needs --------------------------------------------------------------------------------
    def _env(self, node: str, point: Point) -> dict[str, int]:
        return {d: c for d, c in zip(domain(self.g.node(node)), point, strict=True) if c is not None}

    def _branch(self, node: str, point: Point) -> Read:
        env = self._env(node, point)
        for r in self.reads[node]:
            if bool(r.cond.ev(env)):
                return r
        n = self.g.node(node)
        where = ", ".join(f"{d}={c}" for d, c in env.items())
        raise RecurrentError(f"no case of {label(n)}'s definition holds at {where}; its cases are "
                             + "; ".join(f"[{b.cond}]" for b in n.attrs["branches"])
                             + " (add a default case: x[True] = ...)")

    def _src_points(self, node: str, point: Point, r: Read) -> list[Point]:
        """The points of ``r.src`` that ``node`` reads at ``point`` (several where the index has slices)."""
        env = self._env(node, point)
        src = self.g.node(r.src)
        axes: list[list[int]] = []
        for d, e in zip(domain(src), r.index, strict=True):
            if isinstance(e, Slice):
                lo, hi = int(e.lo.ev(env)), int(e.hi.ev(env))
                axes.append(list(range(lo, hi)))
                bad = [c for c in (lo, hi - 1) if hi > lo and not 0 <= c < self.sizes[d]]
            else:
                c = int(e.ev(env))
                axes.append([c])
                bad = [c] if not 0 <= c < self.sizes[d] else []
            if bad:
                self._out_of_domain(node, point, r, d, bad[0])
        return [tuple(p) for p in itertools.product(*axes)]

    def _out_of_domain(self, node: str, point: Point, r: Read, d: str, c: int) -> None:
        n, src = self.g.node(node), self.g.node(r.src)
        where = ", ".join(f"{k}={v}" for k, v in self._env(node, point).items())
        text = (f"{label(n)} reads {label(src)}{fmt_index(r.index)} at {where}: {d}={c} is outside the "
                "domain "
                f"of {label(src)} ({d} in [0, {self.sizes[d]}))")
        if self._recursive(node, r.src):
            raise NoBaseCase(f"the recursive definition of {label(src)} has no base case: {text}; add one, "
                             "e.g. "
                             f"{label(src)}[{d} == 0] = ...")
        raise IndexOutOfDomain(text)

    def _recursive(self, a: str, b: str) -> bool:
        """Whether ``a`` and ``b`` lie on one dependence cycle."""
        from reflow.recurrent.dgraph import sccs

        if not hasattr(self, "_comp"):
            self._comp = {n: k for k, c in enumerate(sccs(self.g)) for n in c}
            self._cyclic = {k for k, c in enumerate(sccs(self.g))
                            if len(c) > 1 or c[0] in self.g.successors(c[0])}
        return self._comp[a] == self._comp[b] and self._comp[a] in self._cyclic

    def deps(self, key: Key) -> list[Key]:
        node, point = key
        n = self.g.node(node)
        k = kind(n)
        if k == "merge":
            r = self._branch(node, point)
            out = [self._key(r.src, p) for p in self._src_points(node, point, r)]
        elif k == "udf" and n.attrs.get("batched"):
            out = []
            for full in self._expand(node, point):
                out += [self._key(r.src, p) for r in self.reads[node]
                        for p in self._src_points(node, full, r)]
        else:
            out = [self._key(r.src, p) for r in self.reads[node] for p in self._src_points(node, point, r)]
        pos = self._call_pos.get(key)
        if pos is not None and pos[1] > 0:
            out.append(self._calls[pos[0]][pos[1] - 1])
        return out

    def _expand(self, node: str, point: Point) -> list[Point]:
        """Every full point a batched call covers."""
        n = self.g.node(node)
        ranges = [range(self.sizes[d]) if c is None else [c] for d, c in zip(domain(n), point, strict=True)]
        return [tuple(p) for p in itertools.product(*ranges)]

    # -- values --------------------------------------------------------------------------------------------
    def _read(self, node: str, point: Point, r: Read) -> torch.Tensor:
        pts = self._src_points(node, point, r)
        src = self.g.node(r.src)
        batched = src.attrs.get("batched", ())

        def one(p: Point) -> torch.Tensor:
            v = self.memo[self._key(r.src, p)][r.src_port]
            for d, c in zip(domain(src), p, strict=True):
                if d in batched:
                    v = v[c]
            return v

        index = r.index
        sl = [k for k, e in enumerate(index) if isinstance(e, Slice)]
        if not sl:
            return one(pts[0])
        env = self._env(node, point)
        sizes = [int(index[k].hi.ev(env)) - int(index[k].lo.ev(env)) for k in sl]  # type: ignore[union-attr]
        shape = tuple(x for x in sizes)
        spatial = tuple(next(o for o in outs(src) if o.port == r.src_port).shape)
        if not pts:
            dtype = next(o for o in outs(src) if o.port == r.src_port).dtype
            return torch.zeros(shape + tuple(int(s) for s in spatial), dtype=dtype)
        return torch.stack([one(p) for p in pts]).reshape(shape + one(pts[0]).shape)

    def compute(self, key: Key) -> dict[str, torch.Tensor]:
        node, point = key
        n = self.g.node(node)
        k = kind(n)
        env = self._env(node, point)
        if k == "merge":
            r = self._branch(node, point)
            return {"out": self._read(node, point, r)}
        if k == "udf":
            fulls = self._expand(node, point) if n.attrs.get("batched") else [point]
            args = []
            for r in self.reads[node]:
                vals = [self._read(node, full, r) for full in fulls]
                if n.attrs.get("batched"):
                    shape = [self.sizes[d] for d, c in zip(domain(n), point, strict=True) if c is None]
                    args.append(torch.stack(vals).reshape(tuple(shape) + vals[0].shape))
                else:
                    args.append(vals[0])
            result = n.attrs["fn"](env, *args)
            result = result if isinstance(result, tuple) else (result,)
            return {o.port: v for o, v in zip(outs(n), result, strict=True)}
        args = [self._read(node, point, r) for r in self.reads[node]]
        if k == "index":
            return {"out": args[0]}
        return {"out": OPS[k].kernel(n.attrs, 0, env, *args)}

    def demand(self, key: Key) -> dict[str, torch.Tensor]:
        """The values of ``key`` (a node and a point), computing what it needs first (depth first, with the
        path kept explicitly: a point met again on its own path depends on itself)."""
        if key in self.memo:
            return self.memo[key]
        path = {key}
        frames: list[tuple[Key, list[Key]]] = [(key, self.deps(key))]
        while frames:
            top, todo = frames[-1]
            while todo and todo[-1] in self.memo:
                todo.pop()
            if todo:
                nxt = todo.pop()
                if nxt in path:
                    self._self_dependence(top, nxt)
                path.add(nxt)
                frames.append((nxt, self.deps(nxt)))
                continue
            self.memo[top] = self.compute(top)
            frames.pop()
            path.discard(top)
        return self.memo[key]

    def _self_dependence(self, a: Key, b: Key) -> None:
        na, nb = self.g.node(a[0]), self.g.node(b[0])
        where = ", ".join(f"{d}={c}" for d, c in zip(domain(nb), b[1], strict=True) if c is not None)
        raise NoBaseCase(f"{label(nb)} depends on itself at {where or 'its only point'} (through "
                         f"{label(na)}): a "
                         "recursive definition must read an earlier or later point, e.g. x[t - 1], and have "
                         "a "
                         "base case")

    def value(self, node: str, port: str, point: Point) -> torch.Tensor:
        v = self.demand(self._key(node, point))[port]
        n = self.g.node(node)
        for d, c in zip(domain(n), point, strict=True):
            if d in n.attrs.get("batched", ()):
                v = v[c]
        return v

    def full(self, node: str, port: str = "out") -> torch.Tensor:
        """The tensor's values at every point: domain axes (context order) followed by spatial axes."""
        n = self.g.node(node)
        pts = list(itertools.product(*[range(self.sizes[d]) for d in domain(n)]))
        vals = [self.value(node, port, p) for p in pts]
        return torch.stack(vals).reshape(tuple(self.sizes[d] for d in domain(n)) + vals[0].shape)

    def run(self, roots: Iterable[str]) -> None:
        """Evaluate every point of every root, in root order then lexicographic order of points."""
        for node in roots:
            for p in self.points(node):
                self.demand((node, p))


def expr_str(e: Expr) -> str:
    return str(e)
