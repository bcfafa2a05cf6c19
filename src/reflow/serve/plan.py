"""A plan: the optimized graph of a flow cut into stages, each placed on worker processes.

Every node of the plan's graph other than ``input`` and ``output`` is a *stage*: one operator, a fused chain
(``"fused"``, from ``reflow.graph.fuse_chains``) or the whole flow fused into one node (``"serve.pipeline"``).
A stage runs in one worker at a time, on a batch of requests; ``workers`` lists the processes that host a
replica of it. An ``anyof`` stage runs in the server itself: it is the race between its inputs.

Batching per stage: a stage that contains a batched ``map`` takes up to that map's batch of rows and may wait
``max_wait`` seconds to fill it (or, with a latency target, picks the batch size: ``reflow.serve.batching``);
any other stage takes what is queued, up to ``max_items`` requests, without waiting: under load several
requests share one message to the worker, and an idle server adds no delay.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from reflow.graph import Graph, Node
from reflow.serve.interpret import inner_graph
from reflow.serve.ops import RULES, LookupSpec, MapSpec
from reflow.serve.table import Schema

MAX_ITEMS = 16


@dataclass(frozen=True)
class StagePlan:
    """How one stage runs: where, how it batches, how requests are routed to its replicas."""

    name: str
    node: Node
    workers: tuple[int, ...]
    members: tuple[str, ...]
    schema: Schema
    rowwise: bool
    batch: int = 0  # rows per call of its batched map (0: none)
    max_wait: float = 0.0
    target: float | None = None
    batched_ops: tuple[str, ...] = ()
    locality: LookupSpec | None = None  # route by the keys of this lookup, at the stage's head
    home: int | None = None  # the worker that takes this stage's requests first (placement)
    max_items: int = MAX_ITEMS  # requests per batch at most (1: batching off)

    @property
    def in_server(self) -> bool:
        return self.node.op == "serve.anyof"


@dataclass
class Plan:
    """The stages of a flow, their placement on ``workers`` processes, and what the optimizer did."""

    graph: Graph
    stages: dict[str, StagePlan]
    workers: int
    notes: list[str] = field(default_factory=list)
    branches: dict[str, list[frozenset[str]]] = field(default_factory=dict)  # anyof -> stages per input

    def hosted_by(self, worker: int) -> dict[str, Node]:
        """The stage nodes worker ``worker`` hosts."""
        return {s.name: s.node for s in self.stages.values() if worker in s.workers}


def stage_plan(node: Node, workers: tuple[int, ...], locality: bool = True, batching: bool = True,
               home: int | None = None) -> StagePlan:
    """A stage's plan, read from its member operators (``batching=False``: one request at a time)."""
    g, _, _ = inner_graph(node)
    members = tuple(g.names)
    maps = [g.node(m).attrs["spec"] for m in members if isinstance(g.node(m).attrs.get("spec"), MapSpec)]
    batched = [m for m in maps if m.batch]
    targets = [m.target for m in batched if m.target is not None]
    head = g.node(members[0]).attrs.get("spec")
    route = head if locality and isinstance(head, LookupSpec) and head.key is not None else None
    return StagePlan(node.name, node, workers, members, node.attrs.get("schema") or _tail_schema(node),
                     all(RULES[g.node(m).op].rowwise for m in members),
                     max((m.batch for m in batched), default=0),
                     max((m.max_wait for m in batched), default=0.0) if batching else 0.0,
                     min(targets) if targets and batching else None, tuple(m.name for m in batched), route,
                     home, MAX_ITEMS if batching else 1)


def _tail_schema(node: Node) -> Schema:
    g, _, tail = inner_graph(node)
    schema: Schema = g.node(tail).attrs["schema"]
    return schema


def anyof_branches(g: Graph) -> dict[str, list[frozenset[str]]]:
    """For each anyof node, per input: the nodes that only feed that input (cancelled when another wins)."""
    out: dict[str, list[frozenset[str]]] = {}
    for node in g:
        if node.op != "serve.anyof":
            continue
        branches = []
        for e in sorted(g.in_edges(node.name), key=lambda e: int(e.dst_port.removeprefix("in"))):
            branch = {e.src} if g.successors(e.src) == [node.name] and e.src != "input" else set()
            grew = bool(branch)
            while grew:
                grew = False
                for n in g.names:
                    succ = g.successors(n)
                    if n not in branch and n != "input" and succ and all(s in branch for s in succ):
                        branch.add(n)
                        grew = True
            branches.append(frozenset(branch))
        out[node.name] = branches
    return out


