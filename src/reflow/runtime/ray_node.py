"""One node's share of a Ray run: its reactor groups, the agent that drives them, and how values cross nodes.

Policy. Inside a node, reactors keep talking as they do on one machine: each *group* of reactors lives in a
Ray actor (a worker process on that node) that serves invocations over a reflow ``Channel`` (shared memory:
small messages inline, arrays through the group's store). ``NodeGroups`` is the other end of those channels,
in a process on the same node: the scheduler's own process for node 0, a ``NodeAgent`` actor for every
other node. So a batch costs one Ray call per remote node, not one per group, and everything inside a node
stays in shared memory.

Between nodes, values travel with the actor call when small; a value of ``LARGE_BYTES`` or more (arrays,
tensors, containers of them) travels as a Ray object ref (``Shipped``) instead, and Ray moves it from the
object store of the node that made it to the nodes that read it. A ``RefCache`` remembers, for the current
tag, which ref each large value came with, so that a value is put into Ray's store once however many nodes
read it, and one that goes back to the node that made it is found there without crossing the network again.

Faults. ``NodeGroups`` checks that a group's process is alive while it waits for its reply (the same node,
so its pid is visible), and raises ``WorkerCrashed`` naming the group, the node and the reactors it held.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import sys
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from reflow.errors import ChannelClosed, ClusterError, WorkerCrashed
from reflow.runtime.executor import Invocation, ReactionHost, Result
from reflow.runtime.process_executor import serve_hosts
from reflow.runtime.ray_cluster import affinity, require_ray, unlink_after_exit
from reflow.runtime.workers import THREAD_VARS
from reflow.transport import Channel
from reflow.transport.shm import process_alive

LARGE_BYTES = 100 * 1024  # from here on a value crosses nodes as an object ref (Ray inlines smaller ones)
POLL_S = 0.05  # how often a wait for a group's reply checks that the group is alive
STOP_TIMEOUT_S = 5.0  # how long a group may take to stop before it is killed
STOP = "stop"
_names = itertools.count()


# -- values crossing nodes -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Shipped:
    """A large value sent between nodes as a Ray object ref, in place of the value itself."""

    ref: Any


def payload_bytes(value: Any) -> int:
    """Bytes of array data in ``value`` (numpy arrays, torch tensors, and lists, tuples and dicts of them)."""
    if isinstance(value, np.ndarray):
        return int(value.nbytes)
    if isinstance(value, list | tuple):
        return sum(payload_bytes(v) for v in value)
    if isinstance(value, dict):
        return sum(payload_bytes(v) for v in value.values())
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(value, torch.Tensor):
        return int(value.element_size() * value.nelement())
    return 0


class RefCache:
    """The object ref each large value of the current tag travelled with (see the module docstring)."""

    def __init__(self, large_bytes: int = LARGE_BYTES) -> None:
        self.large_bytes = large_bytes
        self._refs: dict[int, tuple[Any, Any]] = {}  # id(value) -> (value, ref); the value pins its id
        self._tag: object = None
        self.put = 0  # values this process put into Ray's object store
        self.reused = 0  # values sent again by the ref they came with

    def new_tag(self, tag: object) -> None:
        """Forget the refs of earlier tags (a value re-sent later is simply put again)."""
        if tag != self._tag:
            self._tag = tag
            self._refs.clear()

    def ship(self, value: Any) -> Any:
        """``value`` itself if small, else a ``Shipped`` ref to it (the one it came with, if any)."""
        if payload_bytes(value) < self.large_bytes:
            return value
        known = self._refs.get(id(value))
        if known is not None and known[0] is value:
            self.reused += 1
            return Shipped(known[1])
        ref = require_ray().put(value)
        self.put += 1
        self._refs[id(value)] = (value, ref)
        return Shipped(ref)

    def ship_values(self, invocation: Invocation) -> Invocation:
        """``invocation`` with its large values shipped as refs."""
        values = {k: self.ship(v) for k, v in invocation.values.items()}
        return invocation._replace(values=values)

    def ship_writes(self, result: Result) -> Result:
        """``result`` with its large writes shipped as refs (in place)."""
        result.writes = {k: self.ship(v) for k, v in result.writes.items()}
        return result

    def fetch(self, shipped: list[Shipped]) -> list[Any]:
        """The values behind ``shipped`` refs, fetched in one call, remembered with the ref they came with."""
        if not shipped:
            return []
        values: list[Any] = require_ray().get([s.ref for s in shipped])
        for s, v in zip(shipped, values, strict=True):
            self._refs[id(v)] = (v, s.ref)
        return values

    def unship_values(self, invocations: Sequence[Invocation]) -> list[Invocation]:
        """``invocations`` with every shipped value fetched."""
        wanted = [v for inv in invocations for v in inv.values.values() if isinstance(v, Shipped)]
        got = iter(self.fetch(wanted))
        return [inv if not any(isinstance(v, Shipped) for v in inv.values.values()) else
                inv._replace(values={k: next(got) if isinstance(v, Shipped) else v
                                     for k, v in inv.values.items()})
                for inv in invocations]

    def unship_writes(self, results: Sequence[Result]) -> None:
        """Fetch every shipped write of ``results`` (in place)."""
        wanted = [v for r in results for v in r.writes.values() if isinstance(v, Shipped)]
        got = iter(self.fetch(wanted))
        for r in results:
            if any(isinstance(v, Shipped) for v in r.writes.values()):
                r.writes = {k: next(got) if isinstance(v, Shipped) else v for k, v in r.writes.items()}


# -- the groups of one node ----------------------------------------------------------------------------------
class ReactorGroup:
    """Ray actor body: keeps one group's reactors and serves their invocations over a channel."""

    def __init__(self, hosts_pickle: bytes, threads: int) -> None:
        import pickle

        # A node runs several groups: cap each one's numeric libraries (see reflow.runtime.workers), before
        # the hosts' modules load them, unless the user set a cap.
        if not any(name in os.environ for name in THREAD_VARS):
            os.environ.update(dict.fromkeys(THREAD_VARS, str(threads)))
        self.hosts: Mapping[str, ReactionHost] = pickle.loads(hosts_pickle)  # a bad pickle fails creation
        self._thread: threading.Thread | None = None

    def serve(self, channel: str) -> int:
        """Serve side ``b`` of ``channel`` (side ``a`` exists) in a thread; returns this process's pid."""
        self._thread = threading.Thread(target=serve_hosts, args=(channel, self.hosts), daemon=True,
                                        name="reflow-reactor-group")
        self._thread.start()
        return os.getpid()

    def stopped(self, timeout: float) -> bool:
        """Wait for the serving thread to end (after a stop message); whether it did."""
        if self._thread is not None:
            self._thread.join(timeout)
        return self._thread is None or not self._thread.is_alive()


@dataclass(frozen=True)
class GroupSpec:
    """What one group keeps: its reactors' paths and their pickled hosts."""

    paths: tuple[str, ...]
    hosts_pickle: bytes


def start_groups(node_id: str, specs: Sequence[GroupSpec], threads: int) -> list[Any]:
    """Start a ``ReactorGroup`` actor per spec on node ``node_id`` (returns at once; they start meanwhile)."""
    actor = require_ray().remote(ReactorGroup)
    return [actor.options(num_cpus=0, scheduling_strategy=affinity(node_id), max_restarts=0)
            .remote(spec.hosts_pickle, threads) for spec in specs]


class NodeGroups:
    """This process's channels to the reactor groups ``actors`` of its own node, which keep ``held``."""

    def __init__(self, label: str, actors: Sequence[Any], held: Sequence[tuple[str, ...]],
                 start_timeout: float) -> None:
        ray = require_ray()
        self.label = label  # how errors name the node
        self.held = list(held)
        self.pids: list[int] = []
        self._actors = list(actors)
        self._chans: list[Channel] = []
        try:
            names = [f"reflow-ray-{os.getpid()}-{next(_names)}-{g}" for g in range(len(actors))]
            self._chans = [Channel(name, "a") for name in names]
            try:
                self.pids = ray.get([a.serve.remote(n) for a, n in zip(actors, names, strict=True)],
                                    timeout=start_timeout)
            except ray.exceptions.GetTimeoutError:
                raise ClusterError(f"the reactor groups on {label} did not start within "
                                   f"{start_timeout:.0f} s (is the node out of memory, or gone?)") from None
            for ch in self._chans:
                ch.connect(start_timeout)
        except BaseException:
            self.close()
            raise

    def send(self, parts: Sequence[tuple[int, Sequence[Invocation]]]) -> None:
        """Send each group its invocations; the replies are taken by ``collect``."""
        for g, invocations in parts:
            try:
                self._chans[g].send(list(invocations))
            except ChannelClosed:
                raise self._crashed(g) from None

    def collect(self, parts: Sequence[tuple[int, Sequence[Invocation]]]) -> list[list[Result]]:
        """The replies to what ``send`` sent, per part."""
        return [self._reply(g) for g, _ in parts]

    def run(self, parts: Sequence[tuple[int, Sequence[Invocation]]]) -> list[list[Result]]:
        self.send(parts)
        return self.collect(parts)

    def _reply(self, g: int) -> list[Result]:
        ch, pid = self._chans[g], self.pids[g]
        while True:
            try:
                reply: list[Result] = ch.recv(timeout=POLL_S)
                return reply
            except TimeoutError:
                if not process_alive(pid):
                    break
            except (ChannelClosed, FileNotFoundError):
                break
        raise self._crashed(g)

    def _crashed(self, g: int) -> WorkerCrashed:
        pid = self.pids[g] if g < len(self.pids) else None
        return WorkerCrashed(f"reactor group {g} on {self.label} (pid {pid}) died while running reactors "
                             f"{list(self.held[g])}; their state is lost")

    def close(self) -> None:
        """Stop the groups, kill their actors, unlink what a killed group left in /dev/shm. Idempotent."""
        ray = require_ray()
        stopping = []
        for ch, pid, actor in zip(self._chans, self.pids, self._actors, strict=False):
            if process_alive(pid):
                with contextlib.suppress(Exception):
                    ch.send(STOP)
                    stopping.append(actor.stopped.remote(STOP_TIMEOUT_S))
        with contextlib.suppress(Exception):  # a group closes its store itself, unless killed first
            ray.wait(stopping, num_returns=len(stopping), timeout=STOP_TIMEOUT_S)
        for actor in self._actors:
            with contextlib.suppress(Exception):
                ray.kill(actor)
        for ch in self._chans:
            ch.close()
        unlink_after_exit(self.pids)
        self._chans, self._actors = [], []


class NodeAgent:
    """Ray actor body on every node but the scheduler's: connects to the node's groups and runs its part of
    each batch on them, with large values crossing nodes as refs."""

    def __init__(self, label: str, actors: Sequence[Any], held: Sequence[tuple[str, ...]],
                 start_timeout: float, large_bytes: int) -> None:
        self.groups = NodeGroups(label, actors, held, start_timeout)
        self.cache = RefCache(large_bytes)

    def pids(self) -> list[int]:
        """This agent's pid, then its groups'."""
        return [os.getpid(), *self.groups.pids]

    def run(self, parts: list[tuple[int, list[Invocation]]]) -> list[list[Result]]:
        if parts:
            self.cache.new_tag(parts[0][1][0].tag)
        parts = [(g, self.cache.unship_values(invs)) for g, invs in parts]
        replies = self.groups.run(parts)
        return [[self.cache.ship_writes(r) for r in reply] for reply in replies]

    def close(self) -> None:
        self.groups.close()
