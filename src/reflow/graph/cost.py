"""The communication cost model: what it costs to move an edge's data between two workers.

A linear model (latency plus size over bandwidth) is the simplest one that still tells a scheduler "keep
chatty neighbours together". The default, ``NO_COMM``, makes every transfer free, which turns every pass
into plain critical-path scheduling.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from reflow.graph.graph import Edge, Graph


@dataclass(frozen=True)
class CommModel:
    """``latency`` in seconds per transfer, ``bandwidth`` in bytes per second."""

    latency: float = 0.0
    bandwidth: float = math.inf

    def edge_cost(self, edge: Edge) -> float:
        """Seconds to move ``edge`` between two workers; 0 for an empty edge with zero latency."""
        if edge.size == 0:
            return self.latency
        return self.latency + edge.size / self.bandwidth


NO_COMM = CommModel()


def pair_cost(g: Graph, src: str, dst: str, comm: CommModel) -> float:
    """Cost of the data ``src`` sends ``dst``: parallel edges travel together: the slowest counts."""
    return max((comm.edge_cost(e) for e in g.out_edges(src) if e.dst == dst), default=0.0)
