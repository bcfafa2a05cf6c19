"""A compiled recurrent program: bounds given, checked, optimized, scheduled; run it or interpret it.

``compile_program`` turns the context's dependence graph into:

- ``source``: the graph with every bound replaced by its value: what the program means. The reference
  interpreter runs this graph (``Program.interpret``).
- ``graph``: ``source`` after the passes (dead code, duplicates, incrementalization, vectorization marks),
  which the scheduler turns into a loop nest with a memory plan (``schedule``), and the executor runs
  (``Program.run``).

Both runs return a ``Result`` (log records, final parameters, requested outputs), so tests compare them.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import torch

from reflow.errors import MissingBound, RecurrentError
from reflow.graph.graph import Graph, Node
from reflow.recurrent.conditions import Cond
from reflow.recurrent.context import Branch, Context, Out
from reflow.recurrent.dgraph import domain, kind, label, reads
from reflow.recurrent.symbolic import Expr, Slice, fmt_index

if TYPE_CHECKING:
    from reflow.recurrent.schedule import Schedule
    from reflow.recurrent.tensor import RecurrentTensor


@dataclass
class Result:
    """What a run produced: log records (one dict per logger call), final parameters, requested outputs."""

    logs: list[dict[str, Any]] = field(default_factory=list)
    params: dict[str, torch.Tensor] = field(default_factory=dict)
    outputs: dict[str, torch.Tensor] = field(default_factory=dict)
    seconds: float = 0.0
    stats: dict[str, Any] = field(default_factory=dict)


def subs_value(v: Any, env: Mapping[str, int]) -> Any:
    """``v`` with every bound in its index expressions, conditions and shapes replaced by its value."""
    if isinstance(v, (Expr, Slice, Cond)):
        out = v.subs(env)
        if isinstance(out, Expr) and out.const() is not None:
            return out
        return out
    if isinstance(v, Branch):
        return Branch(v.cond.subs(env), tuple(subs_value(e, env) for e in v.index))
    if isinstance(v, Out):
        return Out(v.port, tuple(_dim(subs_value(d, env)) for d in v.shape), v.dtype)
    if isinstance(v, tuple):
        return tuple(subs_value(x, env) for x in v)
    if isinstance(v, list):
        return [subs_value(x, env) for x in v]
    return v


def _dim(d: Any) -> Any:
    return d.const() if isinstance(d, Expr) and d.const() is not None else d


SHAPE_ATTRS = ("shape",)


def substitute(g: Graph, env: Mapping[str, int]) -> Graph:
    out = Graph(g.name)
    for n in g:
        attrs = {k: (subs_value(v, env) if k not in ("fn", "value") else v) for k, v in n.attrs.items()}
        for k in SHAPE_ATTRS:
            if k in attrs and isinstance(attrs[k], tuple):
                attrs[k] = tuple(_dim(d) for d in attrs[k])
        out.add_node(replace(n, attrs=attrs))
    for e in g.edges:
        out.connect(e.src, e.src_port, e.dst, e.dst_port, e.size)
    return out


def _exprs(v: Any) -> list[Expr | Slice | Cond]:
    if isinstance(v, (Expr, Slice, Cond)):
        return [v]
    if isinstance(v, Branch):
        return [v.cond, *v.index]
    if isinstance(v, Out):
        return [d for d in v.shape if isinstance(d, Expr)]
    if isinstance(v, (tuple, list)):
        return [x for item in v for x in _exprs(item)]
    return []


def check_bounds(ctx: Context, bounds: Mapping[str, int]) -> None:
    """Every bound the program uses must have a value: the error names the tensor and the expression."""
    known = set(ctx.bound_of.values())
    for name, v in bounds.items():
        if name not in known:
            raise MissingBound(f"compile() got a value for {name!r}, which is not a bound of this program "
                               "(its "
                               f"bounds are {', '.join(sorted(known))})")
        if v < 1:
            raise RecurrentError(f"bound {name} must be at least 1, got {v}")
    g = ctx.graph
    for n in g:
        for d in domain(n):
            if ctx.bound_of[d] not in bounds:
                raise MissingBound(f"tensor {label(n)} has domain ({', '.join(domain(n))}), but bound "
                                   f"{ctx.bound_of[d]} of {d} has no value; pass {ctx.bound_of[d]}=... to "
                                   "compile()")
        for r in reads(g, n.name) if kind(n) in ("index", "merge", "window") else []:
            used = {v for e in (*r.index, r.cond) for v in e.vars()}
            missing = sorted(v for v in used if v in known and v not in bounds)
            if missing:
                src = label(g.node(r.src))
                what = f"{src}{fmt_index(r.index)}" + (f" where {r.cond}" if kind(n) == "merge" else "")
                raise MissingBound(f"tensor {label(n)} reads {what}, but bound {missing[0]} has no value; "
                                   "pass "
                                   f"{missing[0]}=... to compile()")
        for k, v in n.attrs.items():
            if k in ("index", "branches", "fn", "value"):
                continue
            used = {x for e in _exprs(v) for x in e.vars()}
            missing = sorted(x for x in used if x in known and x not in bounds)
            if missing:
                raise MissingBound(f"tensor {label(n)} uses {missing[0]} (in its {k}), which has no value; "
                                   "pass "
                                   f"{missing[0]}=... to compile()")


def check_defined(g: Graph) -> None:
    for n in g:
        if kind(n) == "merge" and not n.attrs["branches"]:
            raise RecurrentError(f"placeholder {label(n)} is never defined: assign it, e.g. {label(n)}[...] "
                                 "= value")


class Program:
    """A compiled recurrent program (see the module docstring)."""

    def __init__(self, ctx: Context, bounds: Mapping[str, int], source: Graph, roots: Sequence[str],
                 outputs: Sequence[tuple[str, str, str]], options: Mapping[str, Any]) -> None:
        self.ctx = ctx
        self.bounds = dict(bounds)
        self.sizes = {d: self.bounds[b] for d, b in ctx.bound_of.items() if b in self.bounds}
        self.source = source
        self.roots = list(roots)
        self.outputs = list(outputs)  # (name, node, port)
        self.options = dict(options)
        self.graph: Graph = source
        self.schedule: Schedule | None = None
        self.stream_dim: str | None = None  # set when the learner runs behind acting (option stream)
        self.memory_estimate = 0  # bytes the schedule keeps at its peak (an upper bound)
        self.offload: set[tuple[str, str]] = set()  # values kept on disk while their loop runs
        self.pass_log: list[tuple[str, int, int]] = []  # (pass, nodes before, nodes after)

    def _resources(self) -> dict[str, Any]:
        return self.ctx.resources

    def interpret(self) -> Result:
        """Run the reference interpreter on the source graph (slow; for checking, and small programs)."""
        from reflow.recurrent.interpret import Interpreter

        start = time.perf_counter()
        with _opened(self._resources(), self.sizes) as logs:
            it = Interpreter(self.source, self.sizes, self._resources())
            it.run(self.roots)
            params = {label(self.source.node(p)): _last(it, self.source, p, self.sizes)
                      for p in self.ctx.params if p in self.source}
            outputs = {name: it.full(node, port) for name, node, port in self.outputs}
        return Result(logs, params, outputs, time.perf_counter() - start)

    def run(self, progress: bool = False) -> Result:
        """Run the scheduled, optimized program."""
        from reflow.recurrent.execute import Executor

        start = time.perf_counter()
        with _opened(self._resources(), self.sizes) as logs:
            ex = Executor(self)
            ex.run(progress=progress)
            params = {label(self.source.node(p)): ex.last_value(p)
                      for p in self.ctx.params if p in self.graph}
            outputs = {name: ex.full(node, port) for name, node, port in self.outputs}
            stats = ex.stats()
        return Result(logs, params, outputs, time.perf_counter() - start, stats)

    def explain(self) -> str:
        from reflow.recurrent.explain import explain

        return explain(self)

    def drawing(self) -> Any:
        """An object whose ``graph()`` is what ``reflow graph`` draws (return it from a file's ``main()``)."""
        from reflow.recurrent.explain import Drawing

        return Drawing(self)


class _opened:
    """Opens every resource (env banks, loggers) for one run and closes them on every exit path."""

    def __init__(self, resources: Mapping[str, Any], sizes: Mapping[str, int]) -> None:
        from reflow.recurrent.udf import Run

        self.resources = resources
        self.run = Run(sizes)

    def __enter__(self) -> list[dict[str, Any]]:
        opened = []
        try:
            for r in self.resources.values():
                r.open(self.run)
                opened.append(r)
        except BaseException:
            for r in reversed(opened):
                r.close()
            raise
        return self.run.logs

    def __exit__(self, *exc: object) -> None:
        for r in reversed(list(self.resources.values())):
            r.close()


def _last(it: Any, g: Graph, node: str, sizes: Mapping[str, int]) -> torch.Tensor:
    point = tuple(sizes[d] - 1 for d in domain(g.node(node)))
    v: torch.Tensor = it.value(node, "out", point)
    return v


OPTIONS = frozenset({"outputs", "optimize", "memory_budget", "stream"})


def compile_program(ctx: Context, bounds: Mapping[str, int], *, outputs: Sequence[Any] = (),
                    optimize: bool = True, **options: Any) -> Program:
    """Check and compile ``ctx``'s program for ``bounds``. ``outputs``: tensors (or (name, tensor) pairs)
    whose every value the run should return. Other options go to the passes and the scheduler:
    ``memory_budget`` (bytes), ``stream`` (run learning inside the acting loop where dependences allow)."""
    check_bounds(ctx, bounds)
    env = dict(bounds)
    source = substitute(ctx.graph, env)
    check_defined(source)
    outs: list[tuple[str, str, str]] = []
    for o in outputs:
        name, t = o if isinstance(o, tuple) else (None, o)
        t2: RecurrentTensor = t
        outs.append((name or t2.label, t2.node, t2.port))
    roots = [n.name for n in source if n.attrs.get("side_effect")] + [p for p in ctx.params] \
        + [node for _, node, _ in outs]
    roots = list(dict.fromkeys(roots))
    prog = Program(ctx, bounds, source, roots, outs, options)
    from reflow.recurrent.analysis import check_domains

    check_domains(prog)
    from reflow.recurrent.stream import stream_dim

    stream = options.get("stream")
    prog.stream_dim = stream if isinstance(stream, str) else stream_dim(source) if stream else None
    _plan(prog, optimize)
    budget = options.get("memory_budget")
    if budget is not None and prog.memory_estimate > budget and stream is None:
        # over budget: learn behind acting (values live a few steps), if that keeps less
        before = prog.memory_estimate
        prog.stream_dim = stream_dim(source)
        if prog.stream_dim is not None:
            _plan(prog, optimize)
            if prog.memory_estimate >= before:
                prog.stream_dim = None
                _plan(prog, optimize)
    if budget is not None and prog.memory_estimate > budget:
        from reflow.recurrent.memory import plan_offload

        plan_offload(prog, budget)
    return prog


def _plan(prog: Program, optimize: bool) -> None:
    from reflow.recurrent.memory import estimate
    from reflow.recurrent.schedule import build_schedule

    if optimize:
        from reflow.recurrent.passes import optimize as run_passes

        prog.graph, prog.pass_log = run_passes(prog)
    prog.schedule = build_schedule(prog)
    prog.memory_estimate = estimate(prog.schedule, prog.graph)


def node_text(n: Node) -> str:
    return f"{label(n)} = {kind(n)}"
