"""The executor: runs a schedule, each op vectorized over the dimensions its run covers.

It prepares what each run needs (stores for values read across iterations or after their loop, readers that
cut those stores down, closures for the runs that are not a single kernel call) and then generates and runs
one Python function for the whole schedule (``codegen``). ``Executor.source`` is that function's text.
"""

from __future__ import annotations

import resource
from collections.abc import Callable, Iterable
from typing import Any

import torch

from reflow.errors import RecurrentError
from reflow.graph.graph import Graph
from reflow.recurrent.analysis import Region, branch_regions
from reflow.recurrent.boxes import expr_range, restrict
from reflow.recurrent.dgraph import Read, domain, is_identity, kind, label, outs, reads
from reflow.recurrent.incremental import window_dim, window_kernel
from reflow.recurrent.memory import VIEW_OPS
from reflow.recurrent.ops import OPS
from reflow.recurrent.schedule import Accumulate, Item, Loop, Run, Schedule
from reflow.recurrent.store import DiskBlock, Reader, Store, Tracker
from reflow.recurrent.symbolic import Lin, Slice

Env = dict[str, Any]


def _one(x: Any) -> torch.Tensor:
    """The single output of a user op (which may return it bare or in a 1-tuple)."""
    if isinstance(x, tuple):
        (v,) = x
        return v  # type: ignore[no-any-return]
    return x  # type: ignore[no-any-return]


def _no_bar(it: Iterable[int], dim: str) -> Iterable[int]:
    return it


class Executor:
    """Runs ``prog.schedule`` on ``prog.graph``."""

    def __init__(self, prog: Any) -> None:
        from reflow.recurrent.codegen import CodeGen

        self.prog = prog
        self.g: Graph = prog.graph
        self.sched: Schedule = prog.schedule
        self.sizes: dict[str, int] = prog.sizes
        self.tracker = Tracker()
        self.runs = {r.node: r for r in self.sched.runs()}
        self.reads = {n: reads(self.g, n) for n in self.runs}
        self.loop_span: dict[str, dict[str, tuple[int, int]]] = {}
        self._spans(self.sched.items, {})
        gen = CodeGen(self)
        self.stores: dict[tuple[str, str], Store] = {}
        self.stored: dict[tuple[str, str], bool] = {}
        self._plan_stores(gen)
        self.by_node: dict[str, list[Store]] = {}
        for (node, _), st in self.stores.items():
            self.by_node.setdefault(node, []).append(st)
        self.source = gen.function()
        namespace: dict[str, Any] = {"torch": torch, "_one": _one, **gen.names}
        exec(compile(self.source, f"<reflow.recurrent program {self.g.name}>", "exec"), namespace)
        self._program: Callable[..., None] = namespace["program"]

    # -- planning ----------------------------------------------------------------------------------------
    def _spans(self, items: list[Item], span: dict[str, tuple[int, int]]) -> None:
        for it in items:
            if isinstance(it, (Run, Accumulate)):
                self.loop_span[it.node] = dict(span)
            elif isinstance(it, Loop):
                self._spans(it.body, {**span, it.dim: self.loop_range(it)})

    def loop_range(self, loop: Loop) -> tuple[int, int]:
        """The loop's indices: every run's region along the loop's dim, shifted by its skew."""
        def spans(items: list[Item]) -> list[tuple[int, int]]:
            acc: list[tuple[int, int]] = []
            for it in items:
                if isinstance(it, Run) and loop.dim in self.sched.regions[it.node]:
                    lo, hi = self.sched.regions[it.node][loop.dim]
                    acc.append((lo + it.skew, hi + it.skew))
                elif isinstance(it, Loop):
                    acc += spans(it.body)
            return acc
        rs = spans(loop.body)
        return min(r[0] for r in rs), max(r[1] for r in rs)

    def _plan_stores(self, gen: Any) -> None:
        """A store for every output some reader cannot get from a local variable (decided by walking the
        schedule in program order, as the generated code will run)."""
        whole = {node for _, node, _ in self.prog.outputs} | set(self.prog.ctx.params)
        for run in self.runs.values():
            n = self.g.node(run.node)
            for o in outs(n):
                if isinstance(run, Accumulate):
                    whole.add(run.node)
                keep = self.sched.keep.get((run.node, o.port), {})
                ring = {d: s for d, s in keep.items() if s > 0}
                block = tuple(d for d in domain(n) if keep.get(d) == 0)
                args = (domain(n), ring, block, self.sched.regions[run.node], kind(n) not in VIEW_OPS,
                        self.tracker)
                if (run.node, o.port) in self.prog.offload and block:
                    import tempfile

                    self.stores[(run.node, o.port)] = DiskBlock(*args, folder=tempfile.gettempdir())
                else:
                    self.stores[(run.node, o.port)] = Store(*args)
                self.stored[(run.node, o.port)] = run.node in whole
        # simulate the generator's local variables: a value is local to the code after its run
        order = [r.node for r in self.sched.runs()]
        for node in order:
            for o in outs(self.g.node(node)):
                gen.var[(node, o.port)] = "x"
        for node in order:
            for r in self.reads[node]:
                if r.src in self.runs and not self._local_ok(gen, node, r):
                    self.stored[(r.src, r.src_port)] = True
        gen.var.clear()

    def _local_ok(self, gen: Any, consumer: str, r: Read) -> bool:
        k = kind(self.g.node(consumer))
        if isinstance(self.runs[consumer], Accumulate):
            return gen.trivial(consumer, r, point=True) is not None
        if k in ("merge", "window") and not (k == "merge" and self.point_merge(self.runs[consumer])):
            return False  # their closures read stores
        if k in ("merge",) and not is_identity(r.index, domain(self.g.node(r.src))):
            return False
        return gen.trivial(consumer, r) is not None

    def point_merge(self, run: Run) -> bool:
        """Whether a merge picks one whole case per run (its conditions involve only loop indices)."""
        n = self.g.node(run.node)
        cond_vars = {v for b in n.attrs["branches"] for v in b.cond.vars()}
        return not cond_vars & set(run.vec)

    def spatial_ranks(self, run: Run) -> list[int]:
        ranks = []
        for r in self.reads[run.node]:
            src = self.g.node(r.src)
            o = next(o for o in outs(src) if o.port == r.src_port)
            ranks.append(len(o.shape) + sum(isinstance(e, Slice) for e in r.index))
        return ranks

    def weight_is_shared(self, run: Run) -> bool:
        """Whether a matmul's weight is the same for every point the run computes (``x @ w`` then works)."""
        (_, w) = self.reads[run.node]
        return not (set(domain(self.g.node(w.src))) & set(run.vec)) and len(
            next(o for o in outs(self.g.node(w.src)) if o.port == w.src_port).shape) == 2

    def full_shape(self, run: Run) -> tuple[int, ...] | None:
        if not run.vec:
            return None
        region = self.sched.regions[run.node]
        return tuple(region[d][1] - region[d][0] for d in run.vec)

    def covers(self, run: Run) -> bool:
        """Whether the result certainly has full-sized axes for every vectorized dim (some input varies over
        each of them); if not, the generated code expands it."""
        n = self.g.node(run.node)
        k = kind(n)
        if k in ("udf", "rand"):
            return True
        if k in ("const", "powers"):
            return not run.vec
        if k == "symval":
            return bool(set(run.vec) <= n.attrs["expr"].vars())
        covered = [set().union(*(e.vars() for e in r.index)) for r in self.reads[run.node]]
        if k == "merge":
            return all(set(run.vec) <= c for c in covered)
        return set(run.vec) <= set().union(*covered)

    def reader(self, run: Run, r: Read, region: Region | None = None) -> Reader:
        src_dom = domain(self.g.node(r.src))
        return Reader(self.stores[(r.src, r.src_port)], src_dom, r, run.vec,
                      region or self.sched.regions[run.node])

    def no_case(self, run: Run) -> Callable[[Env], None]:
        n = self.g.node(run.node)

        def fail(env: Env) -> None:
            where = ", ".join(f"{d}={env[d]}" for d in domain(n) if d in env)
            raise RecurrentError(f"no case of {label(n)}'s definition holds at {where} (add a default case: "
                                 "x[True] = ...)")
        return fail

    # -- closures for runs that are not one kernel call --------------------------------------------------
    def closure(self, run: Run) -> Callable[[Env], tuple[torch.Tensor, ...]]:
        n = self.g.node(run.node)
        k = kind(n)
        region = self.sched.regions[run.node]
        fixed = [d for d in domain(n) if d not in run.vec]
        if k == "merge":
            return self._merge(run, region)
        if k == "window":
            if window_dim(n) in run.vec:
                return self._window(run, self.reads[run.node][0], region)
            rd = self.reader(run, self.reads[run.node][0])
            kern = OPS["window"].kernel
            nb = len(run.vec)
            return lambda env: (kern(n.attrs, nb, env, rd.read(env)),)
        grid = self._grid(run.vec, region)
        kernel, attrs, nb = OPS[k].kernel, n.attrs, len(run.vec)
        readers = [self.reader(run, r) for r in self.reads[run.node]]

        def compute(env: Env) -> tuple[torch.Tensor]:
            kenv = {**grid, **{d: env[d] for d in fixed}}
            return (kernel(attrs, nb, kenv, *[rd.read(env) for rd in readers]),)
        return compute

    def _grid(self, vec: tuple[str, ...], region: Region) -> Env:
        env: Env = {}
        for k, d in enumerate(vec):
            lo, hi = region[d]
            shape = [1] * len(vec)
            shape[k] = hi - lo
            env[d] = torch.arange(lo, hi).reshape(shape)
        return env

    def _window(self, run: Run, r: Read, region: Region) -> Callable[[Env], tuple[torch.Tensor]]:
        """A window reduction for the whole range of its moving dimension: read the hull of all its windows
        once, then scan (``incremental.window_kernel``)."""
        n = self.g.node(run.node)
        d = window_dim(n)
        assert d is not None
        src_dom = domain(self.g.node(r.src))
        pos = next(k for k, e in enumerate(r.index) if isinstance(e, Slice) and d in e.vars())
        win: Slice = r.index[pos]  # type: ignore[assignment]
        p0, p1 = region[d]
        fixed = [x for x in domain(n) if x not in run.vec]
        axis = run.vec.index(d)
        gamma, reverse = float(n.attrs["gamma"]), bool(n.attrs["reverse"])
        readers: dict[tuple[int, int], Reader] = {}
        nb = len(run.vec)

        def compute(env: Env) -> tuple[torch.Tensor]:
            box = {x: (env[x], env[x] + 1) for x in fixed}
            box.update({x: region[x] for x in run.vec})
            lo = max(expr_range(win.lo, box)[0], 0)
            hi = max(min(expr_range(win.hi, box)[1], self.sizes[src_dom[pos]]), lo)
            rd = readers.get((lo, hi))
            if rd is None:
                whole = Slice(Lin((), lo), Lin((), hi))
                index = tuple(whole if k == pos else e for k, e in enumerate(r.index))
                hull = Read(r.port, r.src, r.src_port, index)
                rd = readers[(lo, hi)] = self.reader(run, hull)
            x = rd.read(env).squeeze(axis).movedim(nb - 1, 0)  # (hull, other vec..., spatial)
            y = window_kernel(x, lo, win, d, {x_: env[x_] for x_ in fixed}, p0, p1, gamma, reverse)
            return (y.movedim(0, axis),)
        return compute

    def _merge(self, run: Run, region: Region) -> Callable[[Env], tuple[torch.Tensor]]:
        """A conditional definition over a vectorized range: each case fills the part of the range where it
        is the first to hold (a sub-box, or a mask where the condition is not an interval)."""
        n = self.g.node(run.node)
        branches = n.attrs["branches"]
        rds = self.reads[run.node]
        fixed = [d for d in domain(n) if d not in run.vec]
        if self.point_merge(run):
            live = [(b, r) for b, r in zip(branches, rds, strict=True) if r.src in self.runs]
            whole = [self.reader(run, r) for _, r in live]
            conds = [b.cond for b, _ in live]
            fail = self.no_case(run)

            def pick(env: Env) -> tuple[torch.Tensor]:
                for c, rd in zip(conds, whole, strict=True):
                    if c.ev(env):
                        return (rd.read(env),)
                fail(env)
                raise AssertionError
            return pick
        grid = self._grid(run.vec, region)
        cache: dict[tuple[int, ...], list[tuple[Reader, Region, Any] | None]] = {}
        (o,) = outs(n)

        def plan(env: Env) -> list[tuple[Reader, Region, Any] | None]:
            key = tuple(env[d] for d in fixed)
            got = cache.get(key)
            if got is None:
                box = {d: (env[d], env[d] + 1) for d in fixed}
                box.update({d: region[d] for d in run.vec})
                got = []
                for b, r, reg in zip(branches, rds, branch_regions(self.g, run.node, box), strict=True):
                    if reg is None:
                        got.append(None)
                        continue
                    vreg = {d: reg[d] for d in run.vec}
                    exact = restrict(b.cond, box) is not None
                    got.append((self.reader(run, r, {**region, **vreg}), vreg, None if exact else b.cond))
                cache[key] = got
            return got

        def vector(env: Env) -> tuple[torch.Tensor]:
            parts = plan(env)
            live = [p for p in parts if p is not None]
            if len(live) == 1 and live[0][2] is None and all(live[0][1][d] == region[d] for d in run.vec):
                return (live[0][0].read(env),)
            shape = tuple(region[d][1] - region[d][0] for d in run.vec)
            out: torch.Tensor | None = None
            done = torch.zeros(shape, dtype=torch.bool)
            for p in live:
                rd, vreg, cond = p
                val = rd.read(env)
                if out is None:
                    out = torch.zeros(shape + tuple(val.shape[len(shape):]), dtype=o.dtype)
                sl = tuple(slice(vreg[d][0] - region[d][0], vreg[d][1] - region[d][0]) for d in run.vec)
                mask = ~done[sl]
                if cond is not None:
                    sub = {d: grid[d].narrow(k, vreg[d][0] - region[d][0], vreg[d][1] - vreg[d][0])
                           for k, d in enumerate(run.vec)}
                    mask = mask & torch.as_tensor(cond.ev({**env, **sub})).expand(mask.shape)
                m = mask.reshape(mask.shape + (1,) * (val.dim() - len(shape)))
                out[sl] = torch.where(m, val, out[sl])
                done[sl] |= mask
            assert out is not None
            return (out,)
        return vector

    # -- running -----------------------------------------------------------------------------------------
    def run(self, progress: bool = False) -> None:
        bar = _no_bar
        if progress:
            from tqdm import tqdm

            def bar(it: Iterable[int], dim: str) -> Iterable[int]:
                out: Iterable[int] = tqdm(it, desc=f"{dim} loop", leave=False)
                return out
        self._program({}, bar)

    def last_value(self, node: str, port: str = "out") -> torch.Tensor:
        s = self.stores[(node, port)]
        if s.last is None:
            raise RecurrentError(f"no value of {node} was kept to return")
        v = s.get(dict(zip([d for d, _ in s.rings], s.last, strict=True)))
        for d in s.dims:
            if d not in s.ring:
                v = v[-1]
        return v

    def full(self, node: str, port: str = "out") -> torch.Tensor:
        s = self.stores[(node, port)]
        if s.rings:
            raise RecurrentError(f"output {node} was not kept whole")
        v = s.get({})
        dims = domain(self.g.node(node))
        want = tuple(self.sizes[d] for d in dims)
        if tuple(v.shape[:len(dims)]) != want:
            v = v.expand(want + tuple(v.shape[len(dims):]))
        return v

    def stats(self) -> dict[str, Any]:
        return {"peak_tracked_bytes": self.tracker.peak,
                "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}
