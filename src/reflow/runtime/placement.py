"""Placement: which worker process keeps which reactor.

Policy. A reactor's state lives in exactly one process, so placement works on reactors, not reactions: the
reaction graph is contracted to one node per reactor (cost: the sum of its reactions' costs, declared or
measured and fed back with ``Graph.with_costs``), reactors on a dependency cycle are contracted further into
one group, and the graph passes place the groups: critical-path linear clustering keeps each heavy chain in
one process, so none of its messages crosses a process boundary, and merging folds the clusters onto the
workers by simulated makespan, with every cross-process message costing ``MESSAGE_LATENCY``. Cheap reactors
therefore stay together, and only work that outweighs a message is spread out. Reactors named in ``local``
stay in the scheduler's process (worker ``-1``): this is how a program mixes threads and processes.

Every pass is deterministic, so a placement is a pure function of the graph and the worker count. Placement
never changes results, only where reactions run: the scheduler's determinism does not depend on it.
"""

from __future__ import annotations

from collections.abc import Collection

from reflow.graph import Graph
from reflow.graph.clustering import linear_clustering
from reflow.graph.contract import contract, cycle_groups
from reflow.graph.cost import CommModel
from reflow.graph.merge import merge_clusters

LOCAL = -1
MESSAGE_LATENCY = 15e-6  # seconds, one way, small message between processes (transport_latency)
PROCESS_COMM = CommModel(latency=MESSAGE_LATENCY)


def reactor_costs(graph: Graph) -> dict[str, float]:
    """Sum of reaction costs per reactor path (``attrs["reactor"]`` of each reaction node)."""
    costs: dict[str, float] = {}
    for node in graph:
        path = str(node.attrs["reactor"])
        costs[path] = costs.get(path, 0.0) + node.cost
    return costs


def place(graph: Graph, workers: int, local: Collection[str] = (),
          comm: CommModel = PROCESS_COMM) -> dict[str, int]:
    """Map each reactor of the reaction graph ``graph`` to a worker in ``range(workers)``, or ``LOCAL``."""
    if workers < 1:
        raise ValueError(f"placement needs at least 1 worker process, got {workers}")
    costs = reactor_costs(graph)
    unknown = sorted(set(local) - set(costs))
    if unknown:
        raise ValueError(f"reactors {unknown} asked to stay local are not in the program; "
                         f"its reactors are {sorted(costs)}")
    out = {path: LOCAL for path in local}
    remote = graph.subgraph(n.name for n in graph if str(n.attrs["reactor"]) not in out)
    reactors = contract(remote, {n.name: str(n.attrs["reactor"]) for n in remote}, f"{graph.name}/reactors")
    group_of = cycle_groups(reactors)
    groups = contract(reactors, group_of, f"{graph.name}/groups")
    clusters = merge_clusters(groups, linear_clustering(groups, comm), workers, comm).clusters
    # Heaviest cluster first on worker 0, so a program's main chain lands in the same place every time.
    ranked = sorted(clusters, key=lambda c: -sum(groups.node(g).cost for g in c))
    worker_of_group = {g: w for w, cluster in enumerate(ranked) for g in cluster}
    out.update((path, worker_of_group[group_of[path]]) for path in reactors.names)
    return out
