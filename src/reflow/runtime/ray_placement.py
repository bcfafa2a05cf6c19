"""Placement over a cluster: which node, and which reactor group on that node, keeps each reactor.

Policy. The same graph passes that place reactors onto worker processes (``placement.place``: reactors
contracted to one node each, dependency cycles to one group, critical-path clustering, merging by simulated
makespan) run twice, with the communication cost of each level:

1. Reactors onto nodes, where every message crossing nodes costs ``NETWORK_COMM`` (an actor call between
   machines: a millisecond, not the 15 us of shared memory). The passes fill as many nodes as they are
   given, so this level tries 1, 2, 4, ... nodes and keeps the fewest with the shortest simulated makespan
   (``star_makespan``: every reaction off the scheduler's node pays a network round trip, since values go
   through the scheduler): only work that outweighs a round trip per tag is spread over nodes.
2. The reactors of each node onto its groups (worker processes, one per CPU of the node unless asked
   otherwise), with the shared-memory cost ``PROCESS_COMM``, as the process executor does on one machine.

``pin`` overrides the first level for whole subtrees (``{"main.camera": 1}`` keeps ``main.camera`` and its
children on node 1), for reactors that must sit where a device or a data set is, as Lingua Franca's
federates are placed by the programmer. Reactors in ``local`` stay in the scheduler's process (node 0, group
``LOCAL``). Node 0 is always the scheduler's node. Every step is deterministic, so a placement is a pure
function of the graph, the node count and the nodes' CPUs; it never changes results, only where they are
computed.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from reflow.graph import Graph, topo_order
from reflow.graph.clustering import Clustering
from reflow.graph.cost import CommModel
from reflow.graph.simulate import simulate
from reflow.runtime.placement import LOCAL, PROCESS_COMM, place

NETWORK_LATENCY = 1e-3  # seconds, one way, a small actor call between nodes (benchmarks/ray_overhead.py)
NETWORK_BANDWIDTH = 1.25e9  # bytes per second: 10 Gb/s Ethernet
NETWORK_COMM = CommModel(latency=NETWORK_LATENCY, bandwidth=NETWORK_BANDWIDTH)


@dataclass(frozen=True, order=True)
class Site:
    """Where a reactor lives: node index (0 = the scheduler's node) and group on it (``LOCAL``: the
    scheduler's own process)."""

    node: int
    group: int


def pinned_node(path: str, pin: Mapping[str, int]) -> int | None:
    """The node ``pin`` assigns to reactor ``path``: that of its longest pinned ancestor (or itself)."""
    best: tuple[int, int] | None = None
    for prefix, node in pin.items():
        below = path == prefix or path.startswith((f"{prefix}.", f"{prefix}["))
        if below and (best is None or len(prefix) > best[0]):
            best = (len(prefix), node)
    return None if best is None else best[1]


def place_on_nodes(graph: Graph, node_cpus: Sequence[float], *, local: Collection[str] = (),
                   pin: Mapping[str, int] | None = None, groups_per_node: int | None = None,
                   network: CommModel = NETWORK_COMM, shm: CommModel = PROCESS_COMM) -> dict[str, Site]:
    """The site of every reactor of reaction graph ``graph`` on nodes with ``node_cpus`` CPUs each."""
    if not node_cpus:
        raise ValueError("placement over a cluster needs at least one node")
    pin = dict(pin or {})
    bad = {p: n for p, n in pin.items() if not 0 <= n < len(node_cpus)}
    if bad:
        raise ValueError(f"pin={bad} names nodes that do not exist; the cluster has nodes "
                         f"0..{len(node_cpus) - 1}")
    if groups_per_node is not None and groups_per_node < 1:
        raise ValueError(f"groups_per_node must be >= 1, got {groups_per_node}")
    node_of = _fewest_nodes(graph, len(node_cpus), local, network)
    for path in node_of:
        if path not in local and (pinned := pinned_node(path, pin)) is not None:
            node_of[path] = pinned
    sites = {path: Site(0, LOCAL) for path, node in node_of.items() if node == LOCAL}
    for node, cpus in enumerate(node_cpus):
        paths = {p for p, n in node_of.items() if n == node}
        if not paths:
            continue
        sub = graph.subgraph(n.name for n in graph if str(n.attrs["reactor"]) in paths)
        groups = groups_per_node or max(1, int(cpus))
        sites.update((p, Site(node, g)) for p, g in place(sub, groups, comm=shm).items())
    return sites


def star_makespan(graph: Graph, where: Mapping[str, int], latency: float) -> float:
    """Simulated time of one pass over ``graph`` with each reactor's reactions on the node ``where`` says,
    the executor's way: every value goes through the scheduler on node 0, so a reaction elsewhere costs a
    round trip (``2 * latency``) on top of its own time, and no edge costs anything more."""
    rank = {n: i for i, n in enumerate(topo_order(graph))}
    node_of = {n.name: where[str(n.attrs["reactor"])] for n in graph}
    charged = graph.with_costs({n.name: n.cost + (2 * latency if node_of[n.name] > 0 else 0.0)
                                for n in graph})
    clusters: dict[int, list[str]] = {}
    for n in graph.names:
        clusters.setdefault(node_of[n], []).append(n)
    ordered = tuple(tuple(sorted(c, key=rank.__getitem__)) for _, c in sorted(clusters.items()))
    return simulate(charged, Clustering(ordered)).makespan


def _fewest_nodes(graph: Graph, nodes: int, local: Collection[str], network: CommModel) -> dict[str, int]:
    """``place`` onto 1, 2, 4, ... up to ``nodes`` nodes: the fewest nodes with the shortest makespan."""
    best: tuple[float, dict[str, int]] | None = None
    counts = sorted({min(1 << k, nodes) for k in range(nodes.bit_length() + 1)})
    for count in counts:
        where = place(graph, count, local, comm=network)
        span = star_makespan(graph, {p: max(w, 0) for p, w in where.items()}, network.latency)
        if best is None or span < best[0] * (1 - 1e-9):
            best = (span, where)
    assert best is not None
    return best[1]
