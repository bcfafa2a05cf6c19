"""Ray connections for every part of reflow that runs on more than one machine.

Policy. Ray is reflow's one multi-node engine; this module is the one place that knows how to reach it, so the
Ray executor, the Ray env bank, training and serving all find a cluster the same way:

* ``connect(address)`` joins a running cluster: ``"auto"`` (the cluster ``ray start`` started on this
  machine), ``"HOST:PORT"`` (a head node's GCS address, as ``ray start --head`` prints it) or
  ``"ray://HOST:PORT"`` (Ray Client). Closing it disconnects this process and leaves the cluster running.
* ``connect()`` with no address (and no ``RAY_ADDRESS`` in the environment, which counts as one) starts a
  private single-node Ray on this machine, with an explicit CPU count,
  a small object store and its own temp dir (never the machine-wide ``/tmp/ray``, never a cluster some
  other program started): closing it stops everything it started.
* If this process is already connected (``ray.init`` was called by the user), ``connect`` uses that
  connection and closing it changes nothing: whoever opened a connection closes it.
* ``LocalCluster`` starts several Ray nodes on this machine (``ray.cluster_utils.Cluster``), each with its
  own CPUs and object store, so multi-node code runs in tests, benchmarks and examples without a network.

``require_ray()`` imports ray or raises ``RayUnavailable`` saying which extra to install. ``nodes()`` lists
the alive nodes in a deterministic order, this process's node first, so that placement can number them.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import shutil
import signal
import socket
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from types import ModuleType, TracebackType
from typing import Any

from reflow.errors import ClusterError, RayUnavailable
from reflow.transport.shm import SHM_DIR, process_alive, unlink_segments_of

RAY_EXTRA = "ray"
DEFAULT_OBJECT_STORE_MB = 256
MIN_OBJECT_STORE_MB = 75  # Ray's own floor
DEFAULT_NAMESPACE = "reflow"
PROBE_TIMEOUT_S = 5.0
START_TRIES = 2  # a LocalCluster that fails to start is stopped and started once more
KILL_WAIT_S = 10.0
HEALTH_CHECKS_BEFORE_DEAD = 5  # failed health checks in a row before a node counts as dead
NODE_GONE_TIMEOUT_S = 90.0  # Ray's health checks declare a silent node dead within about 30 s
MB = 1 << 20


def require_ray() -> ModuleType:
    """The ``ray`` module; ``RayUnavailable`` naming the extra to install if it is missing."""
    try:
        return importlib.import_module("ray")
    except ImportError as e:
        raise RayUnavailable(
            f"this needs Ray, which is not installed ({e}); install reflow's `{RAY_EXTRA}` extra: "
            f"pip install 'reflow[{RAY_EXTRA}]' (or pip install 'ray[default]')") from None


def default_temp_dir(kind: str = "local") -> str:
    """A short per-process temp dir for a Ray this process starts (Ray's sockets live under it, and a Unix
    socket path must stay under ~100 characters); ``kind`` keeps a local Ray and a ``LocalCluster`` apart."""
    return os.path.join(tempfile.gettempdir(), f"ray-reflow-{os.getpid()}-{kind}")


@dataclass(frozen=True)
class NodeInfo:
    """One alive Ray node: its id (for scheduling actors onto it), IP address and resources."""

    node_id: str
    address: str
    cpus: float
    is_head: bool

    def describe(self) -> str:
        """How errors and reports name the node: short id and address."""
        return f"node {self.node_id[:8]} ({self.address})"


def nodes() -> list[NodeInfo]:
    """The alive nodes of the connected cluster: this process's node first, then by address and id."""
    ray = require_ray()
    here = ray.get_runtime_context().get_node_id()
    alive = [NodeInfo(str(n["NodeID"]), str(n["NodeManagerAddress"]), float(n["Resources"].get("CPU", 0.0)),
                      "node:__internal_head__" in n["Resources"])
             for n in ray.nodes() if n.get("Alive")]
    return sorted(alive, key=lambda n: (n.node_id != here, n.address, n.node_id))


def affinity(node_id: str) -> Any:
    """A Ray scheduling strategy that puts an actor or task on node ``node_id`` and nowhere else."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    return NodeAffinitySchedulingStrategy(node_id, soft=False)


def unlink_after_exit(pids: Sequence[int], names: Sequence[str] = (), timeout: float = 5.0) -> None:
    """Wait (up to ``timeout``) for processes ``pids`` of this machine to be gone, then unlink the shared
    memory they could not unlink themselves: reflow segments they created, and ``names`` in /dev/shm.

    Ray kills an actor with SIGKILL, and its children (Python's resource tracker among them) with it, so
    whoever started an actor that holds shared memory cleans up after it; ``ray.kill`` returns before the
    process is gone, hence the wait."""
    deadline = time.monotonic() + timeout
    for pid in pids:
        while process_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
    if any(process_alive(pid) for pid in pids):
        return  # still running: what they hold is theirs
    for pid in pids:
        unlink_segments_of(pid)
    for name in names:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(SHM_DIR, name))


def clean_up_after(node: NodeInfo, pids: Sequence[int], names: Sequence[str] = ()) -> Any:
    """``unlink_after_exit(pids, names)`` on ``node``: here if the node is this machine (even when its
    raylet is gone, as for a ``LocalCluster`` node that was removed), else as a small task on the node.
    Returns the task's ref (None when done here); nothing happens on a node that is gone."""
    ray = require_ray()
    if node.address == ray.util.get_node_ip_address():
        unlink_after_exit(pids, names)
        return None
    return ray.remote(unlink_after_exit).options(num_cpus=0, scheduling_strategy=affinity(node.node_id)) \
        .remote(list(pids), list(names))


class RayCluster:
    """A Ray connection reflow opened; ``close()`` (or leaving ``with``) undoes what ``connect`` did."""

    def __init__(self, address: str, started: bool, connected: bool, scratch: str | None = None) -> None:
        self.address = address  # what was asked for ("local" when this process started Ray)
        self.started = started  # this process started a local Ray, and stops it on close
        self.connected = connected  # this process called ray.init, and disconnects on close
        self._scratch = scratch  # a temp dir made for the local Ray, removed on close

    def nodes(self) -> list[NodeInfo]:
        """The cluster's alive nodes, this process's first (see ``nodes``)."""
        return nodes()

    def close(self) -> None:
        """Disconnect (and stop the local Ray if this process started it); idempotent."""
        if self.connected:
            self.connected = self.started = False
            require_ray().shutdown()
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None

    def __enter__(self) -> RayCluster:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def _same_gcs(asked: str, current: str) -> bool:
    """Whether GCS address ``asked`` may name the cluster at ``current`` (ports equal, hosts equal or one
    of them this machine's loopback); a Ray client address (``ray://``) is not compared."""
    if asked.startswith("ray://"):
        return True
    (host, _, port), (now_host, _, now_port) = asked.rpartition(":"), current.rpartition(":")
    return port == now_port and host in {"", "localhost", "127.0.0.1", now_host}


def connect(address: str | None = None, *, num_cpus: int | None = None,
            object_store_mb: int = DEFAULT_OBJECT_STORE_MB, temp_dir: str | None = None,
            namespace: str = DEFAULT_NAMESPACE, runtime_env: dict[str, Any] | None = None,
            log_to_driver: bool = True) -> RayCluster:
    """Connect to the cluster at ``address``, or start a private local Ray when it is None.

    ``num_cpus`` (default: this machine's cores), ``object_store_mb`` and ``temp_dir`` apply only to a Ray
    started here; a running cluster keeps its own. ``runtime_env`` goes to ``ray.init`` (e.g.
    ``{"py_modules": [...]}`` to ship code to nodes that lack it). Raises ``ClusterError`` when no cluster
    answers at ``address``."""
    ray = require_ray()
    if ray.is_initialized():
        current = ray.get_runtime_context().gcs_address
        if address not in (None, "auto", "local") and not _same_gcs(address, current):
            raise ClusterError(
                f"this process is already connected to the Ray cluster at {current}, not {address!r}: Ray "
                "allows one cluster per process; close the other connection (ray.shutdown()) first")
        return RayCluster(address or "local", started=False, connected=False)
    address = address or os.environ.get("RAY_ADDRESS") or None
    if num_cpus is not None and num_cpus < 1:
        raise ClusterError(f"a local Ray needs num_cpus >= 1, got {num_cpus}")
    if object_store_mb < MIN_OBJECT_STORE_MB:
        raise ClusterError(f"a Ray object store needs at least {MIN_OBJECT_STORE_MB} MB, got "
                           f"object_store_mb={object_store_mb}")
    common: dict[str, Any] = {"namespace": namespace, "runtime_env": runtime_env,
                              "log_to_driver": log_to_driver, "configure_logging": False}
    if address is None:
        scratch = None if temp_dir is not None else default_temp_dir()
        try:
            ray.init(address="local", num_cpus=num_cpus or os.cpu_count() or 1,
                     object_store_memory=object_store_mb * MB, include_dashboard=False,
                     _temp_dir=temp_dir or scratch, **common)
        except BaseException:
            if scratch is not None:
                shutil.rmtree(scratch, ignore_errors=True)
            raise
        return RayCluster("local", started=True, connected=True, scratch=scratch)
    _probe(address)
    try:
        ray.init(address=address, **common)
    except (ConnectionError, RuntimeError, ValueError) as e:
        raise ClusterError(
            f"cannot connect to a Ray cluster at {address!r}: {e}. Start one with `ray start --head` (then "
            "pass the address it prints, or 'auto' on the head machine), or leave the address out to start "
            "a local Ray") from None
    return RayCluster(address, started=False, connected=True)


def _probe(address: str) -> None:
    """A ``HOST:PORT`` that does not accept TCP connections fails here at once (``ray.init`` would retry
    for minutes)."""
    host, sep, port = address.rpartition(":")
    if not sep or "://" in address or not port.isdigit():
        return  # "auto" or a Ray Client address: ray.init answers quickly itself
    try:
        socket.create_connection((host, int(port)), timeout=PROBE_TIMEOUT_S).close()
    except OSError as e:
        raise ClusterError(
            f"no Ray cluster answers at {address!r} ({e}). Start one with `ray start --head` on the head "
            "machine and pass the address it prints, or leave the address out to start a local Ray") from None


class LocalCluster:
    """``nodes`` Ray nodes on this machine (``ray.cluster_utils.Cluster``), each with ``cpus_per_node`` CPUs
    and an object store of ``object_store_mb``; connect to it with ``connect(cluster.address)``.

    Every node keeps its files under one private temp dir, and the cluster's address is written there too,
    not to the machine-wide ``/tmp/ray`` (where a plain ``ray.init()`` of another program would find it).
    ``shutdown()`` stops every node; the nodes are real Ray nodes (a raylet and object store each), so code
    that spreads work over them exercises the same paths as on separate machines, except the network.
    ``dead_after_s`` sets how soon a node that stops answering counts as dead (Ray's default is ~15 s)."""

    def __init__(self, nodes: int = 2, cpus_per_node: int = 1,
                 object_store_mb: int = DEFAULT_OBJECT_STORE_MB, temp_dir: str | None = None,
                 dead_after_s: float | None = None) -> None:
        if nodes < 1 or cpus_per_node < 1:
            raise ClusterError(f"a local cluster needs nodes >= 1 and cpus_per_node >= 1, got {nodes} and "
                               f"{cpus_per_node}")
        require_ray()
        self.temp_dir = temp_dir or default_temp_dir("cluster")
        self._scratch = temp_dir is None  # a temp dir made here is removed at shutdown
        self.cpus_per_node = cpus_per_node
        self.object_store_mb = object_store_mb
        self.dead_after_s = dead_after_s
        self._workers: list[Any] = []
        for attempt in range(START_TRIES if self._scratch else 1):
            try:
                self._start(nodes)
                break
            except Exception:
                # Ray waits a fixed 30 s for a new raylet to register; a loaded machine can miss that.
                # With a private temp dir every process of a failed start is found and stopped, so a
                # second start begins clean.
                self.shutdown()
                if attempt + 1 == (START_TRIES if self._scratch else 1):
                    raise

    def _start(self, nodes: int) -> None:
        from ray.cluster_utils import Cluster

        os.makedirs(os.path.join(self.temp_dir, "ray"), exist_ok=True)  # for the address file
        saved = os.environ.get("RAY_TMPDIR")
        os.environ["RAY_TMPDIR"] = self.temp_dir  # where Cluster writes the address file
        try:
            self._cluster: Any = Cluster(initialize_head=True, head_node_args=self._head_args())
        finally:
            if saved is None:
                os.environ.pop("RAY_TMPDIR", None)
            else:
                os.environ["RAY_TMPDIR"] = saved
        self.address: str = str(self._cluster.address)
        for _ in range(nodes - 1):
            self.add_node()

    def _node_args(self) -> dict[str, Any]:
        return {"num_cpus": self.cpus_per_node, "object_store_memory": self.object_store_mb * MB,
                "include_dashboard": False, "temp_dir": self.temp_dir}

    def _head_args(self) -> dict[str, Any]:
        """The head's arguments; ``dead_after_s`` shortens Ray's health checks (by default a lost node counts
        as dead after ~15 s of failed checks), each check still allowed Ray's full reply timeout, so a slow
        but live node on a loaded machine is not declared dead."""
        args = self._node_args()
        if self.dead_after_s is not None:
            checks = HEALTH_CHECKS_BEFORE_DEAD
            period_ms = max(100, int(self.dead_after_s * 1000 / checks))
            args["_system_config"] = {"health_check_period_ms": period_ms,
                                      "health_check_failure_threshold": checks}
        return args

    def add_node(self) -> Any:
        """Start one more node; returns Ray's handle on it (for ``remove_node``)."""
        node = self._cluster.add_node(**self._node_args())
        self._workers.append(node)
        return node

    def remove_node(self, node: Any, wait: bool = False) -> None:
        """Stop one node at once (its processes are killed), as when a machine is lost. With ``wait`` (and
        this process connected), return once the cluster counts it dead: until its health checks fail,
        ``nodes()`` still lists it, and whatever is placed next could land on it."""
        self._cluster.remove_node(node, allow_graceful=False)
        self._workers.remove(node)
        ray = require_ray()
        deadline = time.monotonic() + NODE_GONE_TIMEOUT_S
        while wait and ray.is_initialized() and time.monotonic() < deadline and any(
                n["NodeID"] == node.node_id and n.get("Alive") for n in ray.nodes()):
            time.sleep(0.2)

    @property
    def worker_nodes(self) -> list[Any]:
        """Ray's handles on the nodes added after the head, in the order they were added."""
        return list(self._workers)

    def _kill_processes(self) -> None:
        """Kill what is still running of this cluster's processes: those with its private temp dir on their
        command line (a node whose start failed half-way is not in Ray's own list)."""
        if not self._scratch:
            return  # a temp dir the caller chose may be shared: leave it to Ray
        marker = self.temp_dir.encode()
        killed = []
        for entry in os.listdir("/proc"):
            if entry.isdigit() and int(entry) != os.getpid():
                with contextlib.suppress(OSError), open(f"/proc/{entry}/cmdline", "rb") as f:
                    if marker in f.read():
                        os.kill(int(entry), signal.SIGKILL)
                        killed.append(int(entry))
        deadline = time.monotonic() + KILL_WAIT_S  # gone before their files are removed, or they write more
        while any(process_alive(pid) for pid in killed) and time.monotonic() < deadline:
            time.sleep(0.05)

    def shutdown(self) -> None:
        """Stop every node of the cluster; idempotent."""
        with contextlib.suppress(Exception):
            self._cluster.shutdown()
        self._cluster = None
        self._kill_processes()
        self._workers = []
        if self._scratch:
            shutil.rmtree(self.temp_dir, ignore_errors=True)

    def __enter__(self) -> LocalCluster:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.shutdown()
