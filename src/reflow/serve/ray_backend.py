"""Serving on a Ray cluster: the same server, its workers Ray actors spread over the cluster's nodes.

Policy. The server keeps everything it does locally (HTTP, queues, batching, routing, deadlines, the
``anyof`` races); only where a stage runs changes. Worker ``w`` is a ``ServeActor`` on node ``w mod N`` of the
cluster's N nodes (``reflow.runtime.ray_cluster.nodes``, this machine's first), pinned there, holding the
stages the plan gives it, and a batch is one actor call (Ray moves arrays between nodes through its object
store). Lookups fetch what they miss from a ``StoreActor`` on the server's node that holds the flow's stores.
Connecting, and the "install the extra" error, are ``reflow.runtime.ray_cluster``'s.

Faults and cancelling. An actor that dies (its node lost, a crash) fails the batch it was running, and the
server starts a new one in its place, as for a local worker, on another alive node than the one it died on
when there is one: Ray notices a lost node only after its health checks fail (seconds to minutes on a
loaded machine), and an actor pinned to that node meanwhile would wait for it. A running batch is cancelled
by raising ``Cancelled`` in the actor's thread that runs it (at its next Python bytecode; a ``sleep``
finishes first), and an actor that does not stop within the grace period is killed and replaced.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import sys
import sysconfig
import threading
from collections.abc import Callable, Hashable, Mapping
from typing import Any

from reflow.graph import Node
from reflow.runtime.ray_cluster import RayCluster, affinity, connect, nodes, require_ray
from reflow.runtime.ray_executor import pickle_hosts
from reflow.serve.interpret import compile_stage
from reflow.serve.store import Store, set_fetcher
from reflow.serve.worker import Cancelled, run_batch, warm

ALIVE_EVERY = 1.0  # seconds between checks that an actor is still there


class ServeActorBody:
    """What a Ray serving worker does (made a Ray actor class by ``actor_classes``)."""

    def __init__(self, payload: bytes, stores: Any) -> None:
        import cloudpickle

        ray = require_ray()
        set_fetcher(lambda store, keys: ray.get(stores.fetch.remote(store, list(keys))))
        self.stages: dict[str, Node] = cloudpickle.loads(payload)
        self.programs = {name: compile_stage(node) for name, node in self.stages.items()}
        warm(self.programs)
        self._running: tuple[int, int] | None = None  # (batch, thread id)

    def ready(self) -> tuple[str, int, str]:
        return "ready", os.getpid(), require_ray().get_runtime_context().get_node_id()

    def run(self, msg: tuple[Any, ...]) -> tuple[Any, ...]:
        self._running = (msg[1], threading.get_ident())
        try:
            return run_batch(self.stages, self.programs, msg)
        finally:
            self._running = None

    def cancel(self, batch: int) -> bool:
        """Raise ``Cancelled`` in the thread running ``batch`` (if it still is)."""
        running = self._running
        if running is None or running[0] != batch:
            return False
        ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(running[1]), ctypes.py_object(Cancelled))
        return True


class StoreActorBody:
    """The flow's stores, for the serving actors' lookups to fetch from."""

    def __init__(self, data: dict[str, dict[Hashable, Any]]) -> None:
        self.data = data

    def fetch(self, store: str, keys: list[Hashable]) -> dict[Hashable, Any]:
        table = self.data.get(store, {})
        return {k: table[k] for k in keys if k in table}


def user_modules(stages: Mapping[str, Node]) -> list[str]:
    """Modules of the stages' functions that are neither reflow's nor an installed package's: they travel
    by value, since another node may not be able to import them."""
    installed = tuple({sysconfig.get_paths()[k] for k in ("purelib", "platlib")})
    out = set()
    for node in stages.values():
        for step in compile_stage(node).steps:
            call = getattr(step.node.attrs.get("spec"), "call", None)
            name = getattr(getattr(call, "fn", None), "fn", None).__module__ if call is not None else ""
            module = sys.modules.get(name)
            path = getattr(module, "__file__", None) or ""
            if name and name != "__main__" and not name.startswith("reflow") and path \
                    and not path.startswith(installed):
                out.add(name)
    return sorted(out)


class RayPool:
    """Makes the server's workers Ray actors (``LocalExecutor(..., pool=RayPool(...))``)."""

    def __init__(self, address: str | None = None, cpus_per_worker: float = 1.0) -> None:
        require_ray()
        self.address, self.cpus_per_worker = address, cpus_per_worker
        self._connection: RayCluster | None = None
        self._store: Any = None
        self.node_ids: list[str] = []

    def open(self, stores: Mapping[str, Store]) -> None:
        ray = require_ray()
        self._connection = connect(self.address)
        self.node_ids = [n.node_id for n in nodes()]
        store_actor = ray.remote(num_cpus=0)(StoreActorBody)
        data = {name: dict(s._data or {}) for name, s in stores.items()}
        self._store = store_actor.options(scheduling_strategy=affinity(self.node_ids[0])).remote(data)

    def payload(self, stages: Mapping[str, Node]) -> bytes:
        return pickle_hosts(stages, user_modules(stages))

    def node_for(self, index: int, avoid: str | None = None) -> str:
        """Worker ``index``'s node: round robin over the nodes alive now (a lost node's workers move), other
        than ``avoid`` (where its last actor died) unless no other is left."""
        alive = [n.node_id for n in nodes()]
        kept = [n for n in self.node_ids if n in alive]
        self.node_ids = kept + [n for n in alive if n not in kept]
        choices = [n for n in self.node_ids if n != avoid] or self.node_ids
        return choices[index % len(choices)]

    def slot(self, index: int, payload: bytes, loop: asyncio.AbstractEventLoop,
             on_message: Callable[[Any, Any], None], on_death: Callable[[Any, str], None]) -> RaySlot:
        return RaySlot(index, payload, self, loop, on_message, on_death)

    def close(self) -> None:
        if self._store is not None:
            require_ray().kill(self._store)
            self._store = None
        if self._connection is not None:
            self._connection.close()
            self._connection = None


class RaySlot:
    """Worker ``index`` as a Ray actor on node ``node``; the same surface as ``pool.WorkerSlot``."""

    def __init__(self, index: int, payload: bytes, pool: RayPool, loop: asyncio.AbstractEventLoop,
                 on_message: Callable[[Any, Any], None], on_death: Callable[[Any, str], None]) -> None:
        self.index, self.payload, self.pool, self.loop = index, payload, pool, loop
        self.node = ""
        self.died_on: str | None = None  # the node its last actor died on
        self.on_message, self.on_death = on_message, on_death
        self.ready = False
        self.busy: Any = None
        self.generation = 0
        self.restarts = 0
        self.actor: Any = None
        self._waiting: set[asyncio.Future[None]] = set()

    def start(self) -> None:
        ray = require_ray()
        self.ready, self.busy = False, None
        self.generation += 1
        self.node, self.died_on = self.pool.node_for(self.index, avoid=self.died_on), None
        cls = ray.remote(num_cpus=self.pool.cpus_per_worker, max_concurrency=2, max_restarts=0)
        self.actor = cls(ServeActorBody).options(scheduling_strategy=affinity(self.node)).remote(
            self.payload, self.pool._store)
        self._watch(self.actor.ready.remote(), self.generation)

    def _watch(self, ref: Any, generation: int, answer: bool = True) -> None:
        """Hand the call's result to the executor (``answer``), or report the actor's death if it fails."""
        async def wait() -> None:
            try:
                result = await ref
            except asyncio.CancelledError:
                raise
            except Exception as e:
                if generation == self.generation:
                    self.generation += 1
                    self.ready, self.died_on = False, self.node
                    self.on_death(self, f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
                return
            if generation == self.generation:
                if answer:
                    if not self.ready:  # the first answer says the actor is up: check on it from now on
                        self.loop.call_later(ALIVE_EVERY, self._ping, generation)
                    self.on_message(self, result)
                else:
                    self.loop.call_later(ALIVE_EVERY, self._ping, generation)
        task = asyncio.ensure_future(wait())
        self._waiting.add(task)  # held until done (the loop keeps only weak references)
        task.add_done_callback(self._waiting.discard)

    def _ping(self, generation: int) -> None:
        """An idle actor's node can go away unnoticed; a cheap call every ``ALIVE_EVERY`` s notices."""
        if generation == self.generation and self.actor is not None:
            self._watch(self.actor.ready.remote(), generation, answer=False)

    def send(self, msg: Any) -> None:
        self._watch(self.actor.run.remote(msg), self.generation)

    def cancel(self, batch: int) -> None:
        if self.actor is not None:
            self.actor.cancel.remote(batch)

    def kill(self) -> None:
        if self.actor is not None:
            require_ray().kill(self.actor, no_restart=True)

    def restart(self) -> None:
        self.restarts += 1
        self.kill()
        self.start()

    def detach(self) -> None:
        self.generation += 1
        self.ready = False

    def close(self) -> None:
        self.ready = False
        self.kill()
        self.actor = None

