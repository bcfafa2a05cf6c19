"""Planning: from a costed graph to clusters for P workers (Ramiel's pipeline on reflow's passes).

Policy. The plan is made by the shared graph passes, in this order:

1. **linear clustering** along critical paths: each cluster is a chain that should run on one thread;
2. **merging** the clusters onto at most P workers, greedily by simulated makespan;
3. **cloning** cheap nodes whose output feeds several clusters, where that shortens the simulated makespan
   (a recomputed Relu beats waiting for another thread);
4. **simulation** of the result gives the predicted makespan.

Communication between threads costs no copy (they share memory) but a wake-up: the comm model charges a fixed
``latency`` per cross-cluster edge. For a batch > 1 the planner also weighs **hyperclustering**: split
the batch into P slices and run the whole graph on each slice in parallel. It is chosen when the slice cost
(measured at batch/P by the cost model) beats the inter-op makespan. The work / critical-path ratio bounds
what inter-op parallelism can gain; it is reported with every plan.
"""

from __future__ import annotations

from reflow.graph import Graph
from reflow.graph.cloning import clone_shared_nodes
from reflow.graph.clustering import Clustering, linear_clustering
from reflow.graph.cost import NO_COMM, CommModel
from reflow.graph.critical_path import critical_path
from reflow.graph.merge import merge_clusters
from reflow.graph.simulate import simulate
from reflow.onnx.plan import Plan

THREAD_WAKEUP = 30e-6  # seconds one thread takes to see another's event: the comm latency per cross edge


def batch_slices(batch: int, workers: int) -> int:
    """How many equal batch slices to run at once: the most, up to ``workers``, that divide ``batch`` (every
    slice then runs the same code, whose shapes were fixed for one slice)."""
    return max(d for d in range(1, min(workers, batch) + 1) if batch % d == 0)


def make_plan(
    g: Graph,
    workers: int,
    *,
    comm: CommModel | None = None,
    clone_max_cost: float | None = None,
    slice_cost: float | None = None,
    batch: int = 1,
) -> Plan:
    """Cluster ``g`` (node costs in seconds) for ``workers`` threads.

    ``slice_cost`` is the whole-graph cost at batch ``batch / workers``; with it (and batch > 1) the plan may
    choose hyperclustering.
    """
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    comm = comm or CommModel(latency=THREAD_WAKEUP)
    compute = [n.name for n in g if n.op.startswith("onnx.")]
    serial = g.total_cost()
    _, cp = critical_path(g, NO_COMM)
    linear = linear_clustering(g, comm)
    merged = merge_clusters(g, linear, workers, comm)
    max_cost = clone_max_cost if clone_max_cost is not None else 0.25 * serial / max(len(compute), 1)
    planned_g, planned = clone_shared_nodes(g, merged, max_cost, comm)
    makespan = simulate(planned_g, planned, comm).makespan
    k = sum(1 for c in planned.clusters if any(planned_g.node(n).op.startswith("onnx.") for n in c))
    if workers > 1 and batch > 1 and slice_cost is not None:
        slices = batch_slices(batch, workers)
        hyper = slice_cost + THREAD_WAKEUP  # all slices run at once, one per thread
        if hyper < makespan:
            return Plan(
                g,
                (tuple(compute),),
                workers,
                "batch",
                max(1, workers // slices),
                slices,
                serial,
                hyper,
                cp,
                len(linear),
                len(compute),
            )
    if k <= 1 or makespan >= serial:  # one cluster (or parallel would not pay): run it with every thread
        return Plan(
            g,
            (tuple(compute),),
            workers,
            "clusters",
            workers,
            1,
            serial,
            serial,
            cp,
            len(linear),
            len(compute),
        )
    return Plan(
        planned_g,
        _compute_clusters(planned_g, planned),
        workers,
        "clusters",
        max(1, workers // k),
        1,
        serial,
        makespan,
        cp,
        len(linear),
        len(compute),
    )


def _compute_clusters(g: Graph, c: Clustering) -> tuple[tuple[str, ...], ...]:
    out = [tuple(n for n in cluster if g.node(n).op.startswith("onnx.")) for cluster in c.clusters]
    return tuple(cl for cl in out if cl)
