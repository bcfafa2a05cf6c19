"""The schedule: a loop nest over the symbolic dimensions, found from the dependence graph's cycles.

Policy (Allen and Kennedy's loop distribution and vectorization, generalized to ops with different domains):
take the strongly connected components of the dependences in topological order. A component without a cycle
is one op, run *vectorized*: once, for every point of its domain at the current loop indices (a whole episode
at a time, all envs at once). A component with a cycle needs a *loop* over a dimension that every op in it
has and that carries one of its dependences (``t`` for ``obs[t+1] = step(act[t])``, ``i`` for
``w[i] = update(w[i-1])``); the loop runs forward when the cycle reads the past (``t - 1``, ``0:t``) and
backward when it reads the future (``t + 1``, ``t+1:T``). Inside the loop the dependences that loop carries
are satisfied, so the component is decomposed again, one level deeper. A cycle that no dimension carries is a
tensor needing itself at the same point: ``NoBaseCase``.

Some ops are looped even outside cycles: a stateful user op (a logger) over its non-batched dimensions, and an
op whose shape depends on a dimension (a slice ``t:T`` not turned into a scan) over that dimension.

The memory plan: each value is kept only as long as something reads it. A value read in the loop iteration
that made it is dropped after its last reader there; one read ``w`` iterations later lives in a ring of
``w + 1`` slots; one read after its loop (``obs`` by the backward pass) fills a block that is freed after its
last reader
in the enclosing scope. An elementwise op whose input dies with it writes its result into that input
(*donation*).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from reflow.errors import NoBaseCase, ScheduleError
from reflow.graph.graph import Graph, Node
from reflow.recurrent.analysis import Region, demanded
from reflow.recurrent.boxes import expr_range
from reflow.recurrent.dgraph import Read, components, domain, kind, label, outs, reads
from reflow.recurrent.incremental import window_dim
from reflow.recurrent.symbolic import Expr, Lin, Slice, var


@dataclass
class Run:
    """Compute ``node`` at the current values of the enclosing loops, vectorized over ``vec``; inside a loop,
    ``skew`` iterations behind it (at t = loop index - skew: the learner running behind acting)."""

    node: str
    vec: tuple[str, ...]
    donate: str | None = None  # input port whose buffer receives the result
    skew: int = 0


@dataclass
class Accumulate:
    """Inside a loop over d, ``skew`` steps behind: add this step's partial to ``node``, a sum over d."""

    node: str
    skew: int = 0


@dataclass
class Loop:
    dim: str
    reverse: bool
    body: list[Item]


@dataclass
class Free:
    """Drop the values of ``nodes`` made in the current iteration of the enclosing loop."""

    nodes: list[str]


Item = Run | Loop | Free | Accumulate


@dataclass
class Schedule:
    items: list[Item]
    regions: dict[str, Region]
    loop_of: dict[str, tuple[str, ...]]  # node -> dims of the loops around its run, outermost first
    # (node, port) -> {loop dim: ring size, or 0: a block over the loop's range}
    keep: dict[tuple[str, str], dict[str, int]] = field(default_factory=dict)

    def runs(self) -> Iterator[Run | Accumulate]:
        def walk(items: list[Item]) -> Iterator[Run | Accumulate]:
            for it in items:
                if isinstance(it, (Run, Accumulate)):
                    yield it
                elif isinstance(it, Loop):
                    yield from walk(it.body)
        return walk(self.items)


def offsets(e: Expr | Slice, d: str, region: Region) -> tuple[int, int]:
    """Inclusive range of (read index - d) over ``region``, for an entry reading dimension d."""
    x = var(d)
    if isinstance(e, Slice):
        return expr_range(e.lo - x, region)[0], expr_range(e.hi - 1 - x, region)[1]
    return expr_range(e - x, region)


class Scheduler:
    def __init__(self, g: Graph, sizes: Mapping[str, int], roots: list[str],
                 dim_order: tuple[str, ...]) -> None:
        self.g, self.sizes, self.dim_order = g, dict(sizes), dim_order
        self.regions = demanded(g, sizes, roots)
        self.live = [n for n in g.names if n in self.regions]
        self.reads = {n: reads(g, n) for n in self.live}
        self.deps = {n: list(rs) for n, rs in self.reads.items()}  # reads plus resource sequencing
        for n, extra in sequencing(g, self.live, self.sizes).items():
            self.deps[n] += extra
        self.loop_of: dict[str, tuple[str, ...]] = {}
        # Dimensions parameters step over (iterations, epochs): their loops hold everything of theirs.
        self.step_dims = {d for n in self.live if g.node(n).attrs.get("param") for d in domain(g.node(n))}

    def region(self, n: str) -> Region:
        return self.regions[n]

    def carried(self, r: Read, dst: str, d: str) -> tuple[int, int] | None:
        """Offsets at which ``dst`` reads ``r.src`` along d, if both have d (else None)."""
        src_dom = domain(self.g.node(r.src))
        if d not in src_dom or d not in domain(self.g.node(dst)):
            return None
        e = r.index[src_dom.index(d)]
        region = self.region(dst)
        if not e.vars() & set(region) and isinstance(e, Expr):
            c = int(e.ev({}))
            return c - (region[d][1] - 1), c - region[d][0]
        return offsets(e, d, region)

    def build(self, nodes: list[str], fixed: tuple[str, ...]) -> list[Item]:
        members = set(nodes)
        succ: dict[str, list[str]] = {n: [] for n in nodes}
        for n in nodes:
            for r in self.deps[n]:
                if r.src in members and not self._satisfied(r, n, fixed) and n not in succ[r.src]:
                    succ[r.src].append(n)
        comps = components(nodes, succ.__getitem__)
        for comp in comps:
            if len(comp) > 1 or comp[0] in succ[comp[0]]:
                d, reverse = self._loop_dim(comp, succ, fixed)
                if d in self.step_dims and not reverse:
                    split = self._iteration_split(nodes, succ, fixed, d)
                    if split is not None:
                        before, inside, after = split
                        return [*self.build(before, fixed), Loop(d, False, self.build(inside, (*fixed, d))),
                                *self.build(after, fixed)]
                break
        items: list[Item] = []
        for comp in comps:
            cyclic = len(comp) > 1 or comp[0] in succ[comp[0]]
            if not cyclic:
                items += self._run(comp[0], fixed)
                continue
            d, reverse = self._loop_dim(comp, succ, fixed)
            items.append(Loop(d, reverse, self.build(comp, (*fixed, d))))
        return items

    def _iteration_split(self, nodes: list[str], succ: dict[str, list[str]], fixed: tuple[str, ...],
                         d: str) -> tuple[list[str], list[str], list[str]] | None:
        """Nodes before, inside and after one loop over the iteration dimension ``d`` holding every node
        that has d, if no such node reads another one's future along d (else None: vectorize as usual)."""
        inside = [n for n in nodes if d in domain(self.g.node(n))]
        members = set(inside)
        for n in inside:
            for r in self.deps[n]:
                if r.src in members and n in succ[r.src]:
                    off = self.carried(r, n, d)
                    if off is not None and off[1] > 0:
                        return None
        preds = {n: [m for m in nodes if n in succ[m]] for n in nodes}
        before: set[str] = set()
        stack = [p for n in inside for p in preds[n] if p not in members]
        while stack:
            m = stack.pop()
            if m in before:
                continue
            if m in members:
                return None  # a node without d between two iterations' nodes
            before.add(m)
            stack += preds[m]
        return ([n for n in nodes if n in before], inside,
                [n for n in nodes if n not in before and n not in members])

    def _satisfied(self, r: Read, dst: str, fixed: tuple[str, ...]) -> bool:
        """A dependence strictly across iterations of an enclosing loop is met by that loop's order."""
        for d in fixed:
            off = self.carried(r, dst, d)
            if off is not None and (off[1] < 0 or off[0] > 0):
                return True
        return False

    def _loop_dim(self, comp: list[str], succ: dict[str, list[str]],
                  fixed: tuple[str, ...]) -> tuple[str, bool]:
        common = [d for d in self.dim_order
                  if d not in fixed and all(d in domain(self.g.node(n)) for n in comp)]
        members = set(comp)
        for d in common:
            past = future = False
            for n in comp:
                for r in self.deps[n]:
                    if r.src not in members or n not in succ[r.src]:
                        continue
                    off = self.carried(r, n, d)
                    if off is None or off == (0, 0):
                        continue
                    past |= off[0] < 0
                    future |= off[1] > 0
            if past and future:
                raise ScheduleError(f"the recurrence through "
                                    f"{', '.join(label(self.g.node(n)) for n in comp[:4])} "
                                    f"reads both earlier and later values along {d}; split it into a "
                                    "forward and "
                                    "a backward recurrence")
            if past or future:
                return d, future
        names = ", ".join(label(self.g.node(n)) for n in comp[:6])
        raise NoBaseCase(f"{names} depend on each other at the same point (a cycle no dimension carries): a "
                         "recursive definition must read an earlier or later point, e.g. x[t - 1]")

    def _run(self, n: str, fixed: tuple[str, ...]) -> list[Item]:
        node = self.g.node(n)
        dom = domain(node)
        loop = [d for d in dom if d not in fixed and self._must_loop(n, d)]
        items: list[Item] = [Run(n, tuple(d for d in dom if d not in fixed and d not in loop))]
        self.loop_of[n] = (*fixed, *loop)
        for d in reversed(loop):
            items = [Loop(d, False, items)]
        return items

    def _must_loop(self, n: str, d: str) -> bool:
        node = self.g.node(n)
        k = kind(node)
        if k == "udf":
            return d not in node.attrs.get("batched", ())
        if ragged(node, d) or any(ragged(self.g.node(r.src), d, r.src_port) for r in self.reads.get(n, [])):
            return True  # its shape, or an input's, varies along d
        if k == "powers" and d in node.attrs["n"].vars():
            return True
        if k == "window" and window_dim(node) == d:
            return False  # the executor computes a window over a whole range at once (scans)
        for r in self.reads.get(n, []):
            hits = [e for e in r.index if d in e.vars()]
            if len(hits) > 1 or any(isinstance(e, Slice) for e in hits):
                return True
            if hits and isinstance(hits[0], Expr) and len(hits[0].vars() & set(self.sizes)) > 1:
                return True
        return False


def sequencing(g: Graph, live: list[str], sizes: Mapping[str, int]) -> dict[str, list[Read]]:
    """Dependences that order the calls of ops sharing a resource (an env bank's state): each op after its
    own previous call along every dimension it is not batched over; a later op of the resource after an
    earlier one in the same iteration (step after reset); and the earlier one after the later one's last
    call in the previous iteration of their outermost shared dimension (the next reset after the last step).
    Only the scheduler sees them; they carry no values."""
    by_res: dict[str, list[str]] = {}
    for n in live:
        res = g.node(n).attrs.get("resource")
        if res:
            by_res.setdefault(res, []).append(n)
    out: dict[str, list[Read]] = {}

    def first(n: str) -> tuple[int, ...]:
        """Calls at the same outer coordinates come in this order: fewer inner dims first (a reset at
        (b, i) before the steps at (b, i, t)), as the interpreter orders them."""
        node = g.node(n)
        return tuple(0 if d in domain(node) and d not in node.attrs.get("batched", ()) else -1 for d in sizes)
    for ops in by_res.values():
        ops.sort(key=first)  # stable: ties keep creation order
        for rank, y in enumerate(ops):
            ny = g.node(y)
            dom, port = domain(ny), outs(ny)[0].port
            for d in dom:
                if d not in ny.attrs.get("batched", ()):
                    index = tuple(var(x) - 1 if x == d else var(x) for x in dom)
                    out.setdefault(y, []).append(Read("seq", y, port, index))
            for x in ops[:rank]:
                nx = g.node(x)
                xdom, xbatched = domain(nx), nx.attrs.get("batched", ())

                def at(dims: tuple[str, ...], batched: tuple[str, ...], here: tuple[str, ...],
                       back: str | None = None) -> tuple[Expr, ...]:
                    """An index into an op over ``dims`` from one over ``here``: the same coordinates where
                    shared (one less along ``back``), else the op's last call (its first along batched
                    dims)."""
                    return tuple(var(d) - 1 if d == back else var(d) if d in here
                                 else Lin((), 0) if d in batched else Lin((), sizes[d] - 1) for d in dims)
                out.setdefault(y, []).append(Read("seq", x, outs(nx)[0].port, at(xdom, xbatched, dom)))
                shared = [d for d in xdom if d in dom and d not in xbatched]
                if shared:
                    out.setdefault(x, []).append(
                        Read("seq", y, port, at(dom, ny.attrs.get("batched", ()), xdom, shared[0])))
    return out


def ragged(node: Node, d: str, port: str | None = None) -> bool:
    """Whether a spatial size of ``node`` (of its output ``port``, or of any) varies along ``d``."""
    return any(isinstance(x, Expr) and d in x.vars() for o in outs(node) if port in (None, o.port)
               for x in o.shape)


def build_schedule(prog: object) -> Schedule:
    """The schedule of ``prog.graph`` (see the module docstring)."""
    g: Graph = prog.graph  # type: ignore[attr-defined]
    sizes: Mapping[str, int] = prog.sizes  # type: ignore[attr-defined]
    roots = [r for r in prog.roots if r in g]  # type: ignore[attr-defined]
    order: tuple[str, ...] = prog.ctx.dim_names  # type: ignore[attr-defined]
    s = Scheduler(g, sizes, roots, order)
    items = s.build(s.live, ())
    d = prog.stream_dim  # type: ignore[attr-defined]
    if d is not None:
        from reflow.recurrent.stream import fuse

        items = fuse(items, g, d, s.regions, s.reads)
    sched = Schedule(items, s.regions, s.loop_of)
    from reflow.recurrent.memory import plan_memory

    plan_memory(sched, g, s.reads, roots, [node for _, node, _ in prog.outputs])  # type: ignore[attr-defined]
    return sched
