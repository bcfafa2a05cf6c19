"""The plan: how a graph runs on P worker threads, and the predictions that justify it.

Made by :mod:`reflow.onnx.planner` (the clustering pipeline) or by :func:`serial_plan`; read by the code
generator.
"""

from __future__ import annotations

from dataclasses import dataclass

from reflow.graph import Graph


@dataclass(frozen=True)
class Plan:
    """How to run a graph on ``workers`` threads, with the predictions that justify it."""

    graph: Graph
    clusters: tuple[tuple[str, ...], ...]
    workers: int
    mode: str  # "clusters" (inter-op parallel) or "batch" (hyperclustering: batch slices in parallel)
    intra_threads: int
    batch_slices: int
    serial_cost: float
    makespan: float
    critical_path: float
    linear_clusters: int
    compute_nodes: int

    @property
    def bound(self) -> float:
        """Work / critical path: the most inter-op parallelism can gain, with unlimited workers."""
        return self.serial_cost / self.critical_path if self.critical_path > 0 else 1.0

    @property
    def predicted_speedup(self) -> float:
        return self.serial_cost / self.makespan if self.makespan > 0 else 1.0


def serial_plan(g: Graph, workers: int = 1) -> Plan:
    """Everything in one cluster (no passes run): the serial reference, and the plan for ``workers == 1``."""
    compute = tuple(n.name for n in g if n.op.startswith("onnx."))
    serial = g.total_cost()
    return Plan(g, (compute,), workers, "clusters", workers, 1, serial, serial, serial, 1, len(compute))
