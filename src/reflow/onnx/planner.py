"""Planning: from a costed graph to clusters for P workers (Ramiel's pipeline on reflow's passes).

Policy. The plan is made by the shared graph passes, in this order:

1. **linear clustering** along critical paths: each cluster is a chain that should run on one thread;
2. **merging** the clusters onto at most P workers, greedily by simulated makespan;
3. **cloning** cheap nodes whose output feeds several clusters, where that shortens the simulated makespan
   (a recomputed Relu beats waiting for another thread);
4. **simulation** of the result gives the predicted makespan.

Communication between threads costs no copy (they share memory) but a wake-up: the comm model charges a fixed
``latency`` per cross-cluster edge, ``WAIT_COSTS[runtime]``: for threads what a wait measured in the generated
code, where the woken thread must win the GIL back from one dispatching Python ops (a thread wake-up alone is
~8 us); for worker processes (``reflow.onnx.processes``) no GIL is won back, a wait is an 8-byte message on a
pipe and a process wake-up, plus one copy of the value into its shared slot. The plan is made for the
runtime that will run it: with processes inter-op clusters pay off on finer-grained graphs.

Three plans compete, each predicted in measured time (the summed op costs scaled by the measured whole-graph
time of one thread over their sum, the cost model's calibration):

* **intra-op**: the whole graph on one thread with P torch intra-op threads (``intra_cost``, measured: a
  model with little inter-op parallelism still uses every core, as onnxruntime's intra-op pool does);
* **clusters** (inter-op), one thread each, the simulated makespan;
* **hyperclustering** (batch > 1): the batch split into equal slices run at once, the slice's own graph
  (costed at batch / slices) on each; never predicted faster than the serial time over the slices.

The cheapest wins. The work / critical-path ratio bounds what inter-op parallelism can gain; it is
reported with every plan. A prediction can be wrong where it matters most, between the intra-op plan and a
parallel one of about the same predicted time, so reflow.onnx.pipeline times the two before it picks.
"""

from __future__ import annotations

from typing import Any

from reflow.graph import Graph
from reflow.graph.cloning import clone_shared_nodes
from reflow.graph.clustering import Clustering, linear_clustering
from reflow.graph.cost import NO_COMM, CommModel
from reflow.graph.critical_path import critical_path
from reflow.graph.merge import merge_clusters
from reflow.graph.simulate import simulate
from reflow.onnx.plan import Plan

# seconds a cross-cluster wait costs in the generated code, per runtime. Threads (issue 18): ~0.5 ms per wait
# on shufflenet_v2, whose 2-cluster plan with 46 waits ran 1.84x slower than serial (the 30 us charged before
# hid that). Processes: PROCESS_WAIT_COST, see docs/benchmarks.md (issue 18, round 4).
WAIT_COST = 0.5e-3
PROCESS_WAIT_COST = 0.1e-3  # a pipe wake-up (12 us median, 20 us p90 here) plus copying ~0.5 MB into a slot
WAIT_COSTS = {"threads": WAIT_COST, "processes": PROCESS_WAIT_COST}


def batch_slices(batch: int, workers: int) -> int:
    """How many equal batch slices to run at once: the most, up to ``workers``, that divide ``batch`` (every
    slice then runs the same code, whose shapes were fixed for one slice)."""
    return max(d for d in range(1, min(workers, batch) + 1) if batch % d == 0)


def make_plan(g: Graph, workers: int, **kwargs: Any) -> Plan:
    """The plan predicted cheapest for ``g`` on ``workers`` threads (see :func:`plan_options`)."""
    return plan_options(g, workers, **kwargs)[0]


def plan_options(
    g: Graph,
    workers: int,
    *,
    comm: CommModel | None = None,
    clone_max_cost: float | None = None,
    slice_cost: float | None = None,
    batch: int = 1,
    measured_serial: float | None = None,
    intra_cost: float | None = None,
    runtime: str = "threads",
) -> list[Plan]:
    """Every plan considered for ``g`` (node costs in seconds) on ``workers`` threads, the predicted cheapest
    first; one of them is always the intra-op plan (one cluster on ``workers`` torch threads).

    ``slice_cost`` is the summed op cost of one batch slice's graph (see :func:`batch_slices`); with it (and
    batch > 1) the plan may choose hyperclustering. ``measured_serial`` (the whole graph measured on one
    thread) calibrates the summed op costs; ``intra_cost`` is the whole graph measured on ``workers`` torch
    threads (without it, the intra-op plan is predicted at the serial time). ``runtime`` ("threads" or
    "processes") is what will run the plan: it sets the cost of a cross-cluster wait (``WAIT_COSTS``).
    """
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if runtime not in WAIT_COSTS:
        raise ValueError(f"runtime must be one of {sorted(WAIT_COSTS)}, got {runtime!r}")
    wait = WAIT_COSTS[runtime]
    comm = comm or CommModel(latency=wait)
    compute = tuple(n.name for n in g if n.op.startswith("onnx."))
    serial = g.total_cost()
    scale = measured_serial / serial if measured_serial and serial > 0 else 1.0  # the calibration
    _, cp = critical_path(g, NO_COMM)
    linear = linear_clustering(g, comm)
    merged = merge_clusters(g, linear, workers, comm)
    max_cost = clone_max_cost if clone_max_cost is not None else 0.25 * serial / max(len(compute), 1)
    planned_g, planned = clone_shared_nodes(g, merged, max_cost, comm)
    makespan = simulate(planned_g, planned, comm).makespan
    k = sum(1 for c in planned.clusters if any(planned_g.node(n).op.startswith("onnx.") for n in c))

    def plan(
        graph: Graph,
        clusters: tuple[tuple[str, ...], ...],
        mode: str,
        intra: int,
        slices: int,
        predicted: float,
    ) -> Plan:
        # predictions are kept in summed-op units, so that serial_cost / makespan is the predicted speedup
        return Plan(
            graph,
            clusters,
            workers,
            mode,
            intra,
            slices,
            serial,
            predicted / scale,
            cp,
            len(linear),
            len(compute),
        )

    intra = intra_cost if intra_cost is not None and workers > 1 else serial * scale
    options = [plan(g, (compute,), "clusters", workers, 1, intra)]
    if k > 1:
        options.append(
            plan(
                planned_g,
                _compute_clusters(planned_g, planned),
                "clusters",
                max(1, workers // k),
                1,
                makespan * scale,
            )
        )
    if workers > 1 and batch > 1 and slice_cost is not None:
        slices = batch_slices(batch, workers)
        hyper = max(slice_cost, serial / slices) * scale + wait  # all slices at once, one per thread
        options.append(plan(g, (compute,), "batch", max(1, workers // slices), slices, hyper))
    return sorted(options, key=lambda p: p.makespan)


def _compute_clusters(g: Graph, c: Clustering) -> tuple[tuple[str, ...], ...]:
    out = [tuple(n for n in cluster if g.node(n).op.startswith("onnx.")) for cluster in c.clusters]
    return tuple(cl for cl in out if cl)
