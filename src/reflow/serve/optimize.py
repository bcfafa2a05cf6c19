"""The optimizer: passes over a flow's ``reflow.graph`` Graph, then placement of the stages on the workers.

Each pass is a plain ``Graph -> Graph`` function that copies before it changes anything, run through
``reflow.graph.run_passes`` (which verifies the graph after each one); each can be turned off
(``Optimizations``, ``reflow serve --no-<pass>``), and ``explain`` prints the plan before and after.

* **compete**: a ``map(high_variance=True)`` becomes ``replicas`` copies of itself racing into an ``anyof``:
  the first answer wins and the server cancels the others, queued or running.
* **fusion**: every maximal chain of operators becomes one stage (``reflow.graph.fuse_chains``), so a
  request crosses processes once per chain instead of once per operator; ``whole=True`` fuses the whole
  flow into one stage (and then no replicas race: one worker would run them one after the other). Two rules
  keep a link apart: an ``anyof`` runs in the server, and, with locality on, a lookup by column starts a
  stage (its keys are then known when the stage is routed; Cloudflow's "breakpoint").
* **locality**: a stage that starts with a lookup by column is routed to the replica that caches the most of
  the request's keys (ties: a stable hash of the first key, which spreads the keys over the caches).
* **batching**: stages take several queued requests per message, and batched models wait to fill their
  batch (``reflow.serve.batching``); off, every request runs alone (batched models still see padded batches).
* **placement**: the stage graph is clustered with critical-path linear clustering and merged onto the
  workers by simulated makespan (``reflow.graph.linear_clustering``, ``merge_clusters``), with a process
  hop's cost on every edge between clusters. That gives every stage a *home* worker: a chain lives in one
  process, and stages one request can run at the same time (branches, racing replicas) live in different
  ones. A free worker takes its home stages' requests first and helps with the others when it has nothing
  of its own. Racing replicas too: each has its own home, so that races run side by side on an idle server,
  and any free worker may run any replica, so that under load a replica does not queue for its home while
  others idle. A race stays parallel all the same: a worker runs one batch at a time, so the replicas of
  one request that run at once run on different workers. Off, every worker takes every stage alike.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial

from reflow.graph import Graph, Node, Port, fuse_chains, linear_clustering, merge_clusters, run_passes
from reflow.graph.cost import CommModel
from reflow.runtime.placement import MESSAGE_LATENCY
from reflow.serve.flow import Flow
from reflow.serve.interpret import PIPELINE
from reflow.serve.ops import LookupSpec, MapSpec, UnionSpec, describe
from reflow.serve.plan import Plan, anyof_branches, stage_plan

SERVE_COMM = CommModel(latency=MESSAGE_LATENCY, bandwidth=4e9)  # a hop through the server, shared memory


@dataclass
class Optimizations:
    """Which passes run (each can be turned off: ``reflow serve --no-fusion`` ...)."""

    fusion: bool = True
    whole: bool = False
    batching: bool = True
    compete: bool = True
    locality: bool = True
    placement: bool = True


# -- passes ------------------------------------------------------------------------------------------------
def compete(g: Graph) -> Graph:
    """Each high-variance map ``m`` -> replicas ``m#1..m#k`` feeding an ``anyof`` named ``m``."""
    racing = {n.name: n.attrs["spec"] for n in g if isinstance(n.attrs.get("spec"), MapSpec)
              and n.attrs["spec"].high_variance}
    if not racing:
        return g.copy()
    out = Graph(g.name)
    for node in g:
        spec = racing.get(node.name)
        if spec is None:
            out.add_node(replace(node, attrs=dict(node.attrs)))
            continue
        for i in range(1, spec.replicas + 1):
            name = f"{node.name}#{i}"
            out.add_node(replace(node, name=name, attrs={**node.attrs, "spec": replace(spec, name=name),
                                                          "replica_of": node.name}))
        race = UnionSpec(node.name, (spec.schema,) * spec.replicas, spec.schema, first=True)
        out.add_node(Node(node.name, "serve.anyof", tuple(Port(f"in{i}") for i in range(spec.replicas)),
                          (Port("out"),), 1e-5, {"spec": race, "schema": spec.schema}))
    for e in g.edges:
        if e.dst in racing:
            for i in range(1, racing[e.dst].replicas + 1):
                out.connect(e.src, e.src_port, f"{e.dst}#{i}", e.dst_port, e.size)
        else:
            out.connect(e.src, e.src_port, e.dst, e.dst_port, e.size)
    for name, spec in racing.items():
        for i in range(1, spec.replicas + 1):
            out.connect(f"{name}#{i}", "out", name, f"in{i - 1}", spec.schema.row_bytes())
    return out


def _may_fuse(locality: bool) -> Callable[[Graph, str, str], bool]:
    def may(g: Graph, u: str, v: str) -> bool:
        if "serve.anyof" in (g.node(u).op, g.node(v).op):
            return False
        spec = g.node(v).attrs.get("spec")
        return not (locality and isinstance(spec, LookupSpec) and spec.key is not None)
    return may


def fuse(g: Graph, locality: bool = True) -> Graph:
    """Chain fusion under serving's rules (see the module docstring)."""
    return fuse_chains(g, _may_fuse(locality))


def fuse_whole(g: Graph) -> Graph:
    """The whole flow as one stage: ``input -> pipeline -> output``."""
    out = Graph(g.name)
    inner = [n for n in g.names if n not in ("input", "output")]
    schema = g.node("output").attrs["schema"]
    out.add_node(replace(g.node("input"), attrs=dict(g.node("input").attrs)))
    out.add_node(Node("pipeline", PIPELINE, (Port("in"),), (Port("out"),), sum(g.node(n).cost for n in inner),
                      {"graph": g, "members": inner, "schema": schema}))
    out.add_node(replace(g.node("output"), attrs=dict(g.node("output").attrs)))
    out.connect("input", "out", "pipeline", "in", g.out_edges("input")[0].size if g.out_edges("input") else 0)
    out.connect("pipeline", "out", "output", "in", g.in_edges("output")[0].size)
    return out


# -- placement ---------------------------------------------------------------------------------------------
def homes(g: Graph, workers: int) -> dict[str, int]:
    """Each stage's home worker: linear clustering, merged onto ``workers`` by simulated makespan; the
    heaviest cluster lives on worker 0."""
    stages = g.without(["input", "output"])
    if not len(stages):
        return {}
    clusters = merge_clusters(stages, linear_clustering(stages, SERVE_COMM), workers, SERVE_COMM).clusters
    ranked = sorted(clusters, key=lambda c: -sum(stages.node(n).cost for n in c))
    return {n: w for w, cluster in enumerate(ranked) for n in cluster}


def optimize(flow: Flow, workers: int, opts: Optimizations | None = None) -> Plan:
    """The plan the server runs: the flow's graph after the passes ``opts`` turns on, placed on
    ``workers``."""
    o = opts or Optimizations()
    g = flow.graph()
    passes = ([compete] if o.compete and not o.whole else []) + \
        ([fuse_whole] if o.whole else [partial(fuse, locality=o.locality)] if o.fusion else [])
    out = run_passes(g, passes)
    home = homes(out, workers) if o.placement else {}
    branches = anyof_branches(out)
    everyone = tuple(range(workers))
    stages = {}
    for node in out:
        if node.op in ("input", "output"):
            continue
        hosts = () if node.op == "serve.anyof" else everyone
        stages[node.name] = stage_plan(node, hosts, o.locality, o.batching, home.get(node.name))
    return Plan(out, stages, workers, notes=_notes(g, out, o, home), branches=branches)


def _notes(before: Graph, after: Graph, o: Optimizations, home: dict[str, int]) -> list[str]:
    notes = []
    for n in after:
        if n.op == "serve.anyof" and before.node(n.name).op != "serve.anyof":
            notes.append(f"compete: {n.name} races {len(n.inputs)} replicas; the first answer wins, the "
                         "others are cancelled")
        if n.op == "fused":
            notes.append(f"fusion: {' -> '.join(n.attrs['members'])} run as one stage")
        if n.op == PIPELINE:
            notes.append(f"fusion: the whole flow ({len(n.attrs['members'])} operators) runs as one stage")
    if o.whole and o.compete and any(n.attrs.get("spec") is not None and getattr(n.attrs["spec"],
                                     "high_variance", False) for n in before):
        notes.append("compete skipped: the whole flow runs in one worker, where replicas could not race")
    if not o.batching:
        notes.append("batching off: every request runs alone")
    if home:
        where: dict[int, list[str]] = {}
        for s, w in home.items():
            where.setdefault(w, []).append(s)
        homed = [f"worker {w} homes {names}" for w, names in sorted(where.items())]
        notes.append("placement: " + "; ".join(homed))
    return notes


# -- explain -----------------------------------------------------------------------------------------------
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
        where = "in the server" if sp.in_server else f"on workers {list(sp.workers)}"
        where += f" (home {sp.home})" if sp.home is not None and not sp.in_server else ""
        batch = f", batch {sp.batch} (wait {sp.max_wait * 1e3:g} ms)" if sp.batch else ""
        batch += f", adaptive to {sp.target * 1e3:g} ms" if sp.target else ""
        route = f", routed by cached keys of {sp.locality.store.name}" if sp.locality else ""
        out.append(f"  {sp.name:<24} [{' -> '.join(sp.members)}] {where}{batch}{route}")
    out += [f"  note: {n}" for n in plan.notes]
    return "\n".join(out)
