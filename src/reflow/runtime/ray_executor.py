"""The Ray executor: a reactor program's reactors spread over the nodes of a Ray cluster, same trace.

Policy. The scheduler stays in this process and keeps deciding everything observable (tags, levels, the
order results are applied in), exactly as with threads or worker processes; this executor only decides
where reactions run. ``start`` places every reactor (``ray_placement.place_on_nodes``: the graph passes,
first over nodes with a network cost per message, then over each node's groups with a shared-memory cost),
starts each node's groups as Ray actors pinned to that node, and a ``NodeAgent`` actor on every node but
this one. ``run_batch`` then sends each remote node its part of the batch in one actor call (large values
as object refs), sends this node's groups their parts over shared memory, runs the reactors kept local,
and gathers every reply in batch order. Lingua Franca's federated runtime makes its federates agree on tag
advances through a coordinator (the RTI); here the scheduler is that coordinator, and a level of a tag is
one round of calls, so the trace is the thread executor's by construction.

Code. Reactors are pickled with Ray's cloudpickle, and the modules that define them are sent by value
unless they belong to an installed package, so a program file runs on nodes that do not have it (``reflow
run FILE --ray ADDRESS``). Values sent between nodes must still be importable data (numpy, torch,
builtins, installed packages).

Faults. A node or actor that dies mid-run raises ``NodeLost`` (a ``WorkerCrashed``) naming the node and the
reactors it held, as soon as Ray reports the loss (at once for a killed process, within Ray's health-check
period for a machine that goes silent). ``close`` stops and kills every actor it started and unlinks what a
killed group left in shared memory on this machine; a connection to Ray it opened itself is closed too.
"""

from __future__ import annotations

import contextlib
import importlib
import sys
import sysconfig
from collections.abc import Collection, Mapping, Sequence
from types import ModuleType
from typing import Any

from reflow.errors import ClusterError, NodeLost, WorkerCrashed
from reflow.graph import Graph
from reflow.runtime.executor import Executor, Invocation, ReactionHost, Result, run_invocation
from reflow.runtime.placement import LOCAL
from reflow.runtime.ray_cluster import (
    NodeInfo,
    RayCluster,
    affinity,
    clean_up_after,
    connect,
    nodes,
    require_ray,
)
from reflow.runtime.ray_node import (
    LARGE_BYTES,
    GroupSpec,
    NodeAgent,
    NodeGroups,
    RefCache,
    start_groups,
)
from reflow.runtime.ray_placement import Site, place_on_nodes

START_TIMEOUT_S = 120.0
CLOSE_TIMEOUT_S = 10.0


def _user_module(name: str) -> ModuleType | None:
    """Module ``name`` if it is the user's own: loaded from a file that is neither reflow's, the standard
    library's nor an installed package's (so another node may not be able to import it)."""
    module = sys.modules.get(name)
    path = getattr(module, "__file__", None) or ""
    system = tuple({sysconfig.get_paths()[k] for k in ("purelib", "platlib", "stdlib", "platstdlib")})
    if module is None or name == "__main__" or name.split(".")[0] == "reflow" or not path \
            or path.startswith(system):
        return None
    return module


def user_modules(hosts: Mapping[str, ReactionHost]) -> list[str]:
    """The user's modules that define the hosts' classes."""
    return sorted({type(host).__module__ for host in hosts.values() if _user_module(type(host).__module__)})


def with_dependencies(names: Sequence[str]) -> list[str]:
    """``names`` and every user module they refer to, transitively (a program file that imports a helper
    module beside it: the helper travels by value too, or unpickling fails on a node without the file)."""
    seen: set[str] = set()
    todo = list(names)
    while todo:
        name = todo.pop()
        module = _user_module(name)
        if name in seen or module is None:
            continue
        seen.add(name)
        for value in list(vars(module).values()):
            ref = value.__name__ if isinstance(value, ModuleType) else getattr(value, "__module__", None)
            if isinstance(ref, str) and ref not in seen:
                todo.append(ref)
    return sorted(seen)


def pickle_hosts(hosts: Mapping[str, Any], by_value: Sequence[str]) -> bytes:
    """``hosts`` (reactors, or serving stages) pickled with cloudpickle, the modules ``by_value`` and the
    user modules they refer to included by value."""
    cloudpickle: Any = importlib.import_module("ray.cloudpickle")
    modules = [importlib.import_module(m) for m in with_dependencies(by_value)]
    for m in modules:
        cloudpickle.register_pickle_by_value(m)
    try:
        data: bytes = cloudpickle.dumps(dict(hosts))
        return data
    finally:
        for m in modules:
            cloudpickle.unregister_pickle_by_value(m)


class RayExecutor(Executor):
    """Runs reactors on the nodes of a Ray cluster; see the module docstring.

    ``address``: the cluster to connect to when this process is not connected yet (None: a local Ray, or
    ``RAY_ADDRESS``). ``nodes``: how many of the cluster's nodes to use (default all). ``groups_per_node``:
    worker processes per node (default: the node's CPUs). ``pin``: reactor subtrees to keep on given nodes.
    ``local``: reactors kept in this process. ``large_bytes``: values this large cross nodes as object refs.
    """

    def __init__(self, address: str | None = None, *, nodes: int | None = None,
                 groups_per_node: int | None = None, pin: Mapping[str, int] | None = None,
                 local: Collection[str] = (), start_timeout: float = START_TIMEOUT_S,
                 large_bytes: int = LARGE_BYTES) -> None:
        super().__init__()
        if nodes is not None and nodes < 1:
            raise ValueError(f"RayExecutor needs nodes >= 1, got {nodes}")
        require_ray()
        self.address = address
        self.nodes = nodes
        self.groups_per_node = groups_per_node
        self.pin = dict(pin or {})
        self.local = tuple(local)
        self.start_timeout = start_timeout
        self.large_bytes = large_bytes
        self.workers = 1
        self.placement: dict[str, Site] = {}
        self.cluster_nodes: list[NodeInfo] = []
        self.cache = RefCache(large_bytes)
        self._connection: RayCluster | None = None
        self._home: NodeGroups | None = None
        self._agents: dict[int, Any] = {}  # node index -> its NodeAgent actor
        self._pids: dict[int, list[int]] = {}  # node index -> pids of the processes started there
        self.started_pids: list[int] = []  # every process this executor started, kept after close (tests)

    # -- start ---------------------------------------------------------------------------------------------
    def start(self, hosts: Mapping[str, ReactionHost], graph: Graph) -> None:
        super().start(hosts, graph)
        unknown = sorted(set(self.local) - set(hosts))
        if unknown:
            raise ValueError(f"RayExecutor(local=...): reactors {unknown} are not in the program; its "
                             f"reactors are {sorted(hosts)}")
        try:
            self._connection = connect(self.address)
            alive = nodes()
            count = self.nodes or len(alive)
            if count > len(alive):
                raise ClusterError(f"RayExecutor(nodes={count}) but the cluster has {len(alive)} alive "
                                   "node(s)")
            self.cluster_nodes = alive[:count]
            with_reactions = {str(n.attrs["reactor"]) for n in graph}
            local = [p for p in self.local if p in with_reactions]
            self.placement = place_on_nodes(graph, [n.cpus for n in self.cluster_nodes], local=local,
                                            pin=self.pin, groups_per_node=self.groups_per_node)
            for path in hosts:  # a reactor without reactions is never invoked: it stays here
                self.placement.setdefault(path, Site(0, LOCAL))
            self.workers = len({s for s in self.placement.values() if s.group != LOCAL}) or 1
            self._start_nodes(hosts)
        except BaseException:
            self.close()
            raise

    def _start_nodes(self, hosts: Mapping[str, ReactionHost]) -> None:
        """Start every group of every node at once, then an agent on each remote node to drive them."""
        ray = require_ray()
        by_value = user_modules(hosts)
        specs: dict[int, list[GroupSpec]] = {}
        for site in sorted({s for s in self.placement.values() if s.group != LOCAL}):
            paths = tuple(sorted(p for p, s in self.placement.items() if s == site))
            specs.setdefault(site.node, []).append(GroupSpec(paths, pickle_hosts({p: hosts[p] for p in paths},
                                                                                  by_value)))
        actors = {node: start_groups(self.cluster_nodes[node].node_id, groups,
                                     max(1, int(self.cluster_nodes[node].cpus) // len(groups)))
                  for node, groups in specs.items()}
        agent = ray.remote(NodeAgent)
        for node, groups in specs.items():
            if node != 0:
                info = self.cluster_nodes[node]
                self._agents[node] = agent.options(num_cpus=0, scheduling_strategy=affinity(info.node_id),
                                                   max_restarts=0).remote(
                    info.describe(), actors[node], [g.paths for g in groups], self.start_timeout,
                    self.large_bytes)
        if 0 in specs:
            self._home = NodeGroups(self.cluster_nodes[0].describe(), actors[0], [g.paths for g in specs[0]],
                                    self.start_timeout)
            self._pids[0] = list(self._home.pids)
            self.started_pids += self._pids[0]
        for node, actor in self._agents.items():
            where = self.cluster_nodes[node].describe()
            try:
                self._pids[node] = ray.get(actor.pids.remote(), timeout=self.start_timeout)
                self.started_pids += self._pids[node]
            except ray.exceptions.GetTimeoutError:
                raise ClusterError(f"the node agent on {where} did not start within "
                                   f"{self.start_timeout:.0f} s") from None
            except ray.exceptions.RayError as e:
                raise ClusterError(f"the reactor groups on {where} failed to start: {e}") from None

    def describe(self) -> str:
        """Where the last run ran, for reports: nodes and reactor groups used."""
        used = {s for s in self.placement.values() if s.group != LOCAL}
        nodes_used = {s.node for s in used}
        return f"{len(used)} reactor group(s) on {len(nodes_used)} of {len(self.cluster_nodes)} node(s)"

    # -- run -----------------------------------------------------------------------------------------------
    def held_on(self, node: int) -> list[str]:
        """The reactors node ``node`` keeps (in its groups)."""
        return sorted(p for p, s in self.placement.items() if s.node == node and s.group != LOCAL)

    def run_batch(self, batch: Sequence[Invocation]) -> list[Result]:
        ray = require_ray()
        self.cache.new_tag(batch[0].tag)
        parts: dict[Site, list[int]] = {}
        for i, inv in enumerate(batch):
            parts.setdefault(self.placement[inv.reactor], []).append(i)
        by_node: dict[int, list[tuple[int, list[int]]]] = {}
        for site in sorted(parts):
            if site.group != LOCAL:
                by_node.setdefault(site.node, []).append((site.group, parts[site]))
        results: list[Result | None] = [None] * len(batch)
        calls = {node: self._agents[node].run.remote(
                     [(g, [self.cache.ship_values(batch[i]) for i in idx]) for g, idx in node_parts])
                 for node, node_parts in by_node.items() if node != 0}
        home = [(g, [batch[i] for i in idx]) for g, idx in by_node.get(0, [])]
        if home:
            assert self._home is not None
            self._home.send(home)
        for i in parts.get(Site(0, LOCAL), []):
            results[i] = run_invocation(self._hosts[batch[i].reactor], batch[i])
        replies: dict[int, list[list[Result]]] = {}
        if home:
            assert self._home is not None
            replies[0] = self._home.collect(home)
        for node, call in calls.items():
            try:
                replies[node] = ray.get(call)
            except ray.exceptions.RayError as e:
                raise self._lost(node, e) from None
        for node, node_parts in by_node.items():
            for (_, idx), reply in zip(node_parts, replies[node], strict=True):
                for i, r in zip(idx, reply, strict=True):
                    results[i] = r
        done = [r for r in results if r is not None]
        self.cache.unship_writes(done)
        for r in done:
            self._record(r)
        return done

    def _lost(self, node: int, error: Exception) -> NodeLost:
        """The error for node ``node`` failing a call: its agent, a group of it, or the whole node died."""
        cause = getattr(error, "cause", None)
        detail = str(cause) if isinstance(cause, WorkerCrashed) else f"{type(error).__name__}: {error}"
        return NodeLost(f"{self.cluster_nodes[node].describe()} (node {node} of the run) was lost while "
                        f"running reactors {self.held_on(node)}; their state is lost. Cause: {detail}")

    def _unlink_leftovers(self) -> None:
        """Unlink what killed processes left in the shared memory of the other nodes (node 0's groups were
        cleaned up by ``NodeGroups.close``)."""
        ray = require_ray()
        tasks = []
        for node, pids in self._pids.items():
            if node != 0:
                with contextlib.suppress(Exception):
                    task = clean_up_after(self.cluster_nodes[node], pids)
                    tasks += [task] if task is not None else []
        with contextlib.suppress(Exception):
            ray.wait(tasks, num_returns=len(tasks), timeout=CLOSE_TIMEOUT_S)

    # -- close ---------------------------------------------------------------------------------------------
    def close(self) -> None:
        """Stop every group and agent (killing what does not stop), free shared memory; idempotent."""
        super().close()
        ray = sys.modules.get("ray")
        if self._home is not None:
            self._home.close()
            self._home = None
        if ray is not None and self._agents:
            closing = list(self._agents.values())
            with contextlib.suppress(Exception):
                ray.wait([a.close.remote() for a in closing], num_returns=len(closing),
                         timeout=CLOSE_TIMEOUT_S)
            for actor in closing:
                with contextlib.suppress(Exception):
                    ray.kill(actor)
        self._unlink_leftovers()
        self._agents, self._pids = {}, {}
        if self._connection is not None:
            self._connection.close()
            self._connection = None

