"""The optimizer: passes over a flow's graph, then placement of the stages onto workers."""

from __future__ import annotations

from dataclasses import dataclass

from reflow.graph import Graph
from reflow.serve.flow import Flow
from reflow.serve.ops import describe
from reflow.serve.plan import Plan, replicated_plan


@dataclass
class Optimizations:
    """Which passes run (each can be turned off: ``reflow serve --no-fusion`` ...)."""

    fusion: bool = True
    whole: bool = False
    batching: bool = True
    compete: bool = True
    locality: bool = True
    placement: bool = True


def optimize(flow: Flow, workers: int, opts: Optimizations | None = None) -> Plan:
    o = opts or Optimizations()
    return replicated_plan(flow.graph(), workers, o.locality)


def describe_graph(g: Graph) -> list[str]:
    """One line per operator node: name, what it does, what it reads."""
    lines = []
    for n in g:
        if n.op in ("input", "output"):
            continue
        spec = n.attrs.get("spec")
        what = describe(spec) if spec is not None else n.op
        lines.append(f"  {n.name:<24} {what}   <- {', '.join(g.predecessors(n.name))}")
    return lines


def explain(flow: Flow, workers: int, opts: Optimizations | None = None) -> str:
    """The plan before and after optimization, as ``reflow serve --explain`` prints it."""
    plan = optimize(flow, workers, opts)
    out = [f"flow {flow.name!r}: input {flow.schema} -> output {flow.sink().schema}", "",
           "before (operators):"]
    out += describe_graph(flow.graph())
    out += ["", f"after (stages on {workers} workers):"]
    for sp in plan.stages.values():
        where = "in the server" if sp.in_server else f"workers {list(sp.workers)}"
        batch = f", batch {sp.batch} (wait {sp.max_wait * 1e3:g} ms)" if sp.batch else ""
        batch += f", adaptive to {sp.target * 1e3:g} ms" if sp.target else ""
        route = f", routed by cached keys of {sp.locality.store.name}" if sp.locality else ""
        out.append(f"  {sp.name:<24} [{' -> '.join(sp.members)}] on {where}{batch}{route}")
    out += [f"  note: {n}" for n in plan.notes]
    return "\n".join(out)
