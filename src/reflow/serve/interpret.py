"""Running flow graphs: the reference interpreter (the oracle) and the stage runner the workers use.

``run_reference`` is ``reflow.graph.evaluate`` with one implementation per serving op: one request, one
operator at a time, in topological order. It defines what a flow means; ``flow.run`` is this.

``run_stage`` runs one *stage* of an optimized plan (a single operator, a fused chain, or the whole pipeline
fused into one node) over a batch of requests at once: operator by operator, each over every request still
alive, so a batched model runs once for all of them (``ops.RULES``). If an operator fails on a batch, each
request of the batch is run alone, so the one that raised fails and its batch-mates get their answers. Every
operator's wall time is reported, which is what the per-operator latency histograms show.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from reflow.graph import Graph, Node, evaluate, topo_order
from reflow.serve.ops import RULES, run_op
from reflow.serve.table import Table

PIPELINE = "serve.pipeline"  # a whole flow fused into one node: attrs["graph"] is the inner graph


def _impl(node: Node, *tables: Table) -> Table:
    return run_op(node.op, node.attrs["spec"], [tables])[0]


def _pipeline(node: Node, table: Table) -> Table:
    return run_reference(node.attrs["graph"], table)


IMPLS: dict[str, Any] = {op: _impl for op in RULES} | {PIPELINE: _pipeline}


def run_reference(g: Graph, table: Table) -> Table:
    """The output table of flow graph ``g`` for one request ``table``."""
    result: Table = evaluate(g, {"input": table}, IMPLS)["output"]
    return result


def inner_graph(node: Node) -> tuple[Graph, dict[tuple[str, str], str], str]:
    """A stage node as a graph of operators: (graph, {(member, port): stage input port}, tail member)."""
    if node.op == "fused":
        g = Graph(node.name)
        for m in node.attrs["nodes"]:
            g.add_node(m)
        for e in node.attrs["edges"]:
            g.connect(e.src, e.src_port, e.dst, e.dst_port, e.size)
        head = node.attrs["members"][0]
        return g, {(head, p.name): p.name for p in node.inputs}, node.attrs["members"][-1]
    if node.op == PIPELINE:
        full: Graph = node.attrs["graph"]
        g = full.without(["input", "output"])
        entry = {(e.dst, e.dst_port): "in" for e in full.out_edges("input")}
        return g, entry, full.in_edges("output")[0].src
    g = Graph(node.name)
    g.add_node(node)
    return g, {(node.name, p.name): p.name for p in node.inputs}, node.name


@dataclass(frozen=True)
class Step:
    """One operator of a stage: where each of its inputs comes from (an earlier step, or a stage input)."""

    name: str
    node: Node
    sources: tuple[tuple[bool, str], ...]  # per input port: (from a step?, the step's name or input port)


@dataclass(frozen=True)
class Program:
    """A stage compiled once: its operators in order, and which one answers."""

    steps: tuple[Step, ...]
    tail: str


def compile_stage(node: Node) -> Program:
    """The stage's operators in topological order, each with where its inputs come from."""
    g, entry, tail = inner_graph(node)
    steps = []
    for name in topo_order(g):
        op = g.node(name)
        feeds = {e.dst_port: e.src for e in g.in_edges(name)}
        steps.append(Step(name, op, tuple((True, feeds[p.name]) if p.name in feeds else
                                          (False, entry[(name, p.name)]) for p in op.inputs)))
    return Program(tuple(steps), tail)


@dataclass
class StageResult:
    """One table or one exception per request, and (operator, seconds, rows) per operator call."""

    outputs: list[Table | BaseException]
    timings: list[tuple[str, float, int]] = field(default_factory=list)


def run_stage(node: Node, items: Sequence[Mapping[str, Table]], pads: Mapping[str, int] | None = None,
              program: Program | None = None) -> StageResult:
    """Run stage ``node`` over several requests; ``items[i]`` maps the stage's input ports to tables."""
    prog = program if program is not None else compile_stage(node)
    pads = pads or {}
    values: list[dict[str, Table]] = [{} for _ in items]
    errors: list[BaseException | None] = [None] * len(items)
    timings: list[tuple[str, float, int]] = []
    live = list(range(len(items)))
    for step in prog.steps:
        args = [[values[i][src] if inner else items[i][src] for inner, src in step.sources] for i in live]
        t0 = time.perf_counter()
        results = _run_isolated(step.node, args, pads.get(step.name))
        timings.append((step.name, time.perf_counter() - t0, sum(len(a[0]) for a in args if a)))
        for i, r in zip(live, results, strict=True):
            if isinstance(r, BaseException):
                errors[i] = r
            else:
                values[i][step.name] = r
        live = [i for i in live if errors[i] is None]
        if not live:
            break
    return StageResult([e if e is not None else values[i][prog.tail] for i, e in enumerate(errors)], timings)


def _run_isolated(op: Node, args: list[list[Table]], pad: int | None) -> list[Table | BaseException]:
    try:
        return list(run_op(op.op, op.attrs["spec"], args, pad))
    except Exception as e:
        if len(args) == 1:
            return [e]
    out: list[Table | BaseException] = []
    for a in args:  # find which request it was: the others still get their answers
        try:
            out.append(run_op(op.op, op.attrs["spec"], [a], pad)[0])
        except Exception as e:
            out.append(e)
    return out
