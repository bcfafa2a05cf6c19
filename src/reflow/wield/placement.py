"""A systems problem for RL: place a dataflow graph's nodes on P workers to minimise its makespan.

``GraphPlacementEnv`` (a gymnasium env, id ``reflow/GraphPlacement-v0``) visits the nodes of one
``reflow.graph.Graph`` per episode in topological order and asks, at each node, on which of ``workers``
sequential workers it runs (``Discrete(P)``). A worker runs its nodes in the order they were placed, so the
placement is a ``Clustering`` whose schedule is exactly ``reflow.graph.simulate``'s: a node starts when its
worker is free and its inputs have arrived, an edge between workers costs the comm model's time. The reward
of a step is minus the growth of the partial makespan, over the graph's critical-path length, so an
episode's return is -makespan / critical path (-1 is the lower bound). The observation describes the node
(its cost, bottom level, share of the graph done) and, per worker, its load, when the node could start
there (relative to the best worker) and how much of the node's input data already lives there.

Each reset draws a graph: from ``graphs`` if given (only those), else a random layered DAG of ``nodes``
nodes, or, with probability ``onnx_share``, one of the ONNX models named in ``onnx`` (their graphs with
FLOP-model costs and the ONNX planner's comm model).
``baseline`` is what reflow's passes do on the same graph: linear (critical-path) clustering, then greedy
merging onto P workers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np

from reflow.graph import (
    NO_COMM,
    CommModel,
    Graph,
    bottom_levels,
    linear_clustering,
    merge_clusters,
    simulate,
    topo_order,
)
from reflow.graph.clustering import Clustering

RANDOM_COMM = CommModel(latency=0.2, bandwidth=4.0)  # random DAGs: node costs ~1, edges 0..4 units of data


def random_dag(rng: np.random.Generator, nodes: int, name: str = "dag") -> Graph:
    """A random DAG: node i reads 1-3 of the previous 8 nodes; log-normal costs, random edge sizes."""
    g = Graph(name)
    for i in range(nodes):
        g.add(f"n{i}", "call", inputs=[f"in{k}" for k in range(3)], cost=float(rng.lognormal(0.0, 0.6)))
        if i:
            preds = sorted(set(rng.integers(max(0, i - 8), i, size=int(rng.integers(1, 4))).tolist()))
            for k, p in enumerate(preds):
                g.connect(f"n{p}", "out", f"n{i}", f"in{k}", float(rng.uniform(0.0, 4.0)))
    return g


def onnx_graphs(names: Sequence[str]) -> list[tuple[Graph, CommModel]]:
    """The light ONNX models' graphs with FLOP-model costs, and the comm model of the ONNX planner."""
    from reflow.onnx.costmodel import flop_costs
    from reflow.onnx.importer import import_model
    from reflow.onnx.models import light_model_path
    from reflow.onnx.planner import WAIT_COST

    out = []
    for n in names:
        m = import_model(light_model_path(n))
        out.append((m.graph.with_costs(flop_costs(m)), CommModel(latency=WAIT_COST)))
    return out


def baseline(g: Graph, workers: int, comm: CommModel) -> float:
    """Makespan of critical-path clustering merged onto ``workers`` (reflow's own placement)."""
    return simulate(g, merge_clusters(g, linear_clustering(g, comm), workers, comm), comm).makespan


class GraphPlacementEnv(gym.Env[np.ndarray, int]):
    """See the module docstring."""

    def __init__(
        self,
        workers: int = 4,
        nodes: int = 30,
        onnx: Sequence[str] = (),
        onnx_share: float = 0.5,
        graphs: Sequence[tuple[Graph, CommModel]] | None = None,
        comm: CommModel = RANDOM_COMM,
    ) -> None:
        self.workers, self.nodes, self.comm, self.onnx_share = workers, nodes, comm, onnx_share
        self.graphs = list(graphs or []) + onnx_graphs(onnx)
        self.random_too = not graphs  # explicit graphs only, or random DAGs mixed with the ONNX ones
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (4 + 4 * workers,), np.float32)
        self.action_space: gym.spaces.Discrete = gym.spaces.Discrete(workers)  # type: ignore[assignment]
        self.graph = Graph("empty")

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        if self.graphs and (not self.random_too or self.np_random.random() < self.onnx_share):
            self.graph, self.graph_comm = self.graphs[int(self.np_random.integers(len(self.graphs)))]
        else:
            self.graph, self.graph_comm = random_dag(self.np_random, self.nodes), self.comm
        g = self.graph
        self.order = topo_order(g)
        self.bottom = bottom_levels(g, self.graph_comm)
        self.scale = (
            max(bottom_levels(g, NO_COMM).values(), default=1.0) or 1.0
        )  # critical path: a lower bound
        self.total = g.total_cost() or 1.0
        self.free = np.zeros(self.workers)
        self.load = np.zeros(self.workers)
        self.finish: dict[str, float] = {}
        self.where: dict[str, int] = {}
        self.placed: list[list[str]] = [[] for _ in range(self.workers)]
        self.t = 0
        self.makespan = 0.0
        return self._obs(), {}

    def _starts(self, n: str) -> np.ndarray:
        """When node ``n`` could start on each worker."""
        starts = self.free.copy()
        for e in self.graph.in_edges(n):
            arrive = self.finish[e.src] + self.graph_comm.edge_cost(e)
            for w in range(self.workers):
                local = self.finish[e.src] if self.where[e.src] == w else arrive
                starts[w] = max(starts[w], local)
        return starts

    def _obs(self) -> np.ndarray:
        if self.t >= len(self.order):
            return np.zeros(4 + 4 * self.workers, np.float32)
        n = self.order[self.t]
        starts = self._starts(n)
        data = np.zeros(self.workers)
        for e in self.graph.in_edges(n):
            data[self.where[e.src]] += self.graph_comm.edge_cost(e)
        head = [
            self.graph.node(n).cost / self.scale,
            self.bottom[n] / self.scale,
            self.t / len(self.order),
            self.makespan / self.scale,
        ]
        per = np.concatenate(
            [
                self.load / self.total,
                (starts - starts.min()) / self.scale,
                data / (data.sum() or 1.0),
                (self.free - self.free.min()) / self.scale,
            ]
        )
        return np.asarray(head + per.tolist(), dtype=np.float32)

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if not self.action_space.contains(action):
            raise gym.error.InvalidAction(f"action {action!r} is not a worker in 0..{self.workers - 1}")
        n = self.order[self.t]
        w = int(action)
        start = self._starts(n)[w]
        cost = self.graph.node(n).cost
        self.finish[n] = start + cost
        self.free[w] = start + cost
        self.load[w] += cost
        self.where[n] = w
        self.placed[w].append(n)
        before, self.makespan = self.makespan, max(self.makespan, start + cost)
        self.t += 1
        done = self.t == len(self.order)
        info: dict[str, Any] = {}
        if done:
            info = {
                "makespan": self.makespan,
                "critical_path": self.scale,
                "baseline": baseline(self.graph, self.workers, self.graph_comm),
            }
        return self._obs(), -(self.makespan - before) / self.scale, done, False, info

    def clustering(self) -> Clustering:
        """The placement so far, as a clustering (``reflow.graph.simulate`` gives its makespan)."""
        return Clustering(tuple(tuple(c) for c in self.placed if c))


if "reflow/GraphPlacement-v0" not in gym.registry:
    gym.register("reflow/GraphPlacement-v0", entry_point=GraphPlacementEnv)  # type: ignore[arg-type]
