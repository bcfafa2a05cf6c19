"""The local executor: the server's event loop walks each request through the plan's stages, which run in
worker processes; rows travel over reflow's shared-memory transport.

Policy. A request is a table at the plan's ``input``. When every input of a stage is there, the request
waits in that stage's queue. A worker that is free takes a batch from the queue of one of the stages it hosts
(the one whose oldest request has waited longest; ``batching.Batcher`` says how many and whether to wait for
more), and runs it; each request's answer moves on to the stages it feeds. Each worker runs one batch at a
time, so the queues, and every decision about batching, routing and cancelling, stay here. An array a worker
returns is forwarded to the next worker from where it lies, not copied (``reflow.transport``).

* Routing: a stage whose head is a lookup by column goes to the replica whose cache holds the most of the
  request's keys (locality); otherwise to the first free replica.
* Short cuts: a row-wise stage whose inputs are all empty answers an empty table without a worker (the
  cascade's big model is never called when the small one was sure).
* ``anyof`` runs here: the first input to answer wins and every stage that fed only the others is cancelled,
  queued or running (competitive execution). A losing replica that fails does not fail the request while
  another can still answer.
* Deadlines: every request has one; when it passes the request fails (504) and its work is cancelled. A
  worker's running batch is interrupted when all of its requests gave up, and killed (then restarted) if it
  does not stop within ``kill_grace`` seconds.
* Overload: at most ``max_inflight`` requests are in flight; more are refused at once (503), so no queue grows
  without bound.
* A worker that dies fails the requests it was running (500 naming the stage) and is restarted; later
  requests go to the new one.

Determinism: a stage's answer for a request does not depend on which requests shared its batch (padded
batches, ``reflow.serve.ops``) nor on which worker ran it, so the server answers what ``flow.run`` answers.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

from reflow.errors import DeadlineExceeded, LookupKeyError, OperatorFailed, Overloaded, ServeError
from reflow.serve.batching import Batcher, Decision
from reflow.serve.metrics import Metrics
from reflow.serve.ops import UnionSpec, empty, pick
from reflow.serve.plan import Plan, StagePlan
from reflow.serve.pool import LocalPool, WorkerSlot
from reflow.serve.table import Table
from reflow.serve.worker import Failure

STARVE = 0.02  # seconds after which the oldest request goes first, whatever locality would prefer
SCAN = 32  # queued requests a free replica considers when choosing by locality


@dataclass(eq=False)
class Request:
    id: int
    deadline: float | None
    future: asyncio.Future[Table]
    missing: dict[str, int]
    values: dict[str, Table] = field(default_factory=dict)
    pending: dict[str, Item] = field(default_factory=dict)
    dead: set[str] = field(default_factory=set)
    fired: set[str] = field(default_factory=set)
    timer: asyncio.TimerHandle | None = None


@dataclass(eq=False)
class Item:
    req: Request
    stage: str
    inputs: dict[str, Table]
    rows: int
    since: float
    keys: list[Hashable]
    batch: int | None = None  # the id of the batch it went in (an id, not the Batch: no reference cycle)
    cancelled: bool = False


@dataclass(eq=False)
class Batch:
    id: int
    slot: WorkerSlot
    stage: str
    items: list[Item]
    pad: int | None
    kill: asyncio.TimerHandle | None = None


class LocalExecutor:
    """Runs a ``Plan`` on worker processes; ``await submit(table)`` answers one request."""

    def __init__(self, plan: Plan, stores: dict[str, Any] | None = None, *, max_inflight: int = 256,
                 deadline: float | None = 10.0, kill_grace: float = 1.0, threads_per_worker: int = 1,
                 metrics: Metrics | None = None, interrupt: bool = True, pool: Any = None) -> None:
        self.plan, self.stores = plan, stores or {}
        self.pool = pool if pool is not None else LocalPool(threads_per_worker, fetched=self._fetched)
        self.max_inflight, self.default_deadline, self.kill_grace = max_inflight, deadline, kill_grace
        self.interrupt = interrupt  # False: work nobody waits for runs to its end (as in Cloudflow)
        self.metrics = metrics or Metrics(plan.graph.name)
        self.requests: dict[int, Request] = {}
        self.queues: dict[str, deque[Item]] = {s: deque() for s in plan.stages}
        self.batchers = {s: Batcher(sp) for s, sp in plan.stages.items()}
        self.batches: dict[int, Batch] = {}
        self.cached: list[dict[str, set[Hashable]]] = [{} for _ in range(plan.workers)]
        self.slots: list[WorkerSlot] = []
        self.accepting = False
        self.failed: str | None = None  # why start failed, for the server to tell
        self._ids = itertools.count()
        self._batch_ids = itertools.count()
        self._wake: dict[str, asyncio.TimerHandle] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._all_ready: asyncio.Future[None] | None = None
        self._closing = False
        g = plan.graph
        self._succ = {n: [(e.dst, e.dst_port) for e in g.out_edges(n)] for n in g.names}
        self._inputs = {n: [(e.src, e.dst_port) for e in g.in_edges(n)] for n in g.names}
        self.metrics.track(lambda: len(self.requests), {s: self._depth(s) for s in plan.stages})

    def _fetched(self, store: str, n: int) -> None:
        self.metrics.count(self.metrics.fetches, store, n=n)

    def _depth(self, stage: str) -> Callable[[], float]:
        return lambda: len(self.queues[stage])

    # -- lifecycle -------------------------------------------------------------------------------------------
    async def start(self, timeout: float = 120.0) -> None:
        """Start the workers and wait until each can take batches."""
        self._loop = asyncio.get_running_loop()
        self._all_ready = self._loop.create_future()
        self.pool.start_timeout = timeout
        await self._loop.run_in_executor(None, self.pool.open, self.stores)
        for w in range(self.plan.workers):
            slot = self.pool.slot(w, self._payload(w), self._loop, self._on_message, self._on_death)
            self.slots.append(slot)
            slot.start()
        if not self.slots:
            self._all_ready.set_result(None)
        try:
            await asyncio.wait_for(asyncio.shield(self._all_ready), timeout)
        except BaseException as e:
            self.failed = f"{type(e).__name__}: {e}"
            await self.close()
            raise
        self.accepting = True

    def _payload(self, worker: int) -> bytes:
        """The stages worker ``worker`` hosts, pickled (by value where their module is not importable)."""
        stages = self.plan.hosted_by(worker)
        try:
            payload: bytes = self.pool.payload(stages)
            return payload
        except Exception as e:
            self.failed = f"cannot send the operators of stages {sorted(stages)} to a worker process: {e}"
            raise ServeError(f"{self.failed}; every operator (function, class, and what they use) must "
                             "pickle with cloudpickle") from e

    @property
    def ready(self) -> bool:
        """Accepting requests, and every stage has a replica that can run it."""
        return self.accepting and all(any(self.slots[w].ready for w in sp.workers) or sp.in_server
                                      for sp in self.plan.stages.values())

    async def drain(self, timeout: float = 30.0) -> None:
        """Refuse new requests; wait (up to ``timeout`` s) for those in flight to finish."""
        self.accepting = False
        end = time.monotonic() + timeout
        while self.requests and time.monotonic() < end:
            await asyncio.sleep(0.01)

    async def close(self) -> None:
        """Fail what is still in flight, stop every worker. Idempotent."""
        self.accepting, self._closing = False, True
        for req in list(self.requests.values()):
            self._fail(req, ServeError("the server is shutting down"))
        for h in self._wake.values():
            h.cancel()
        slots, self.slots = self.slots, []
        for slot in slots:
            slot.detach()

        def stop_all() -> None:  # in parallel: each waits for its own process
            threads = [threading.Thread(target=slot.close) for slot in slots]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        if slots:
            await asyncio.get_running_loop().run_in_executor(None, stop_all)
        await asyncio.get_running_loop().run_in_executor(None, self.pool.close)

    # -- requests --------------------------------------------------------------------------------------------
    async def submit(self, table: Table, deadline: float | None = None) -> Table:
        """The flow's answer for ``table``; ``deadline`` in seconds from now (default: the server's).

        Raises Overloaded (503), DeadlineExceeded (504), OperatorFailed (500) or LookupKeyError (404)."""
        if not self.accepting:
            self.metrics.count(self.metrics.shed)
            raise Overloaded("the server is not accepting requests (starting or draining)")
        if len(self.requests) >= self.max_inflight:
            self.metrics.count(self.metrics.shed)
            raise Overloaded(f"{len(self.requests)} requests in flight, the most this server takes "
                             f"(max_inflight={self.max_inflight}); retry later")
        loop = asyncio.get_running_loop()
        budget: float | None = self.default_deadline if deadline is None else deadline
        req = Request(next(self._ids), None if budget is None else time.monotonic() + budget,
                      loop.create_future(), {n: len(v) for n, v in self._inputs.items()})
        self.requests[req.id] = req
        if budget is not None:
            req.timer = loop.call_at(loop.time() + budget, self._expire, req, budget)
        self._deliver(req, "input", table)
        try:
            return await req.future
        except asyncio.CancelledError:  # the client went away
            self._fail(req, ServeError("the client disconnected"))
            raise

    def _expire(self, req: Request, budget: float) -> None:
        where = sorted(req.pending) or ["(between stages)"]
        self._fail(req, DeadlineExceeded(f"request missed its deadline of {budget * 1e3:.0f} ms at stage(s) "
                                         f"{where}"))

    def _finish(self, req: Request) -> None:
        if req.timer is not None:
            req.timer.cancel()
        for item in list(req.pending.values()):
            self._cancel(item)
        req.pending.clear()
        self.requests.pop(req.id, None)

    def _fail(self, req: Request, error: BaseException) -> None:
        if req.id not in self.requests:
            return
        if not req.future.done():  # (cancelled already if the client left)
            req.future.set_exception(error)
            req.future.exception()  # retrieved: a request nobody awaits any more does not warn
        self._finish(req)

    # -- moving a request along ------------------------------------------------------------------------------
    def _deliver(self, req: Request, stage: str, table: Table) -> None:
        req.values[stage] = table
        req.pending.pop(stage, None)
        for dst, port in self._succ[stage]:
            if dst == "output":
                req.future.set_result(table)
                self._finish(req)
                return
            sp = self.plan.stages[dst]
            if sp.in_server:
                self._race(req, dst, int(port.removeprefix("in")), table)
                continue
            req.missing[dst] -= 1
            if req.missing[dst] == 0 and dst not in req.dead:
                self._ready(req, sp)

    def _race(self, req: Request, anyof: str, port: int, table: Table) -> None:
        if anyof in req.fired:
            return
        req.fired.add(anyof)
        for i, branch in enumerate(self.plan.branches.get(anyof, [])):
            if i != port:
                self._kill_branch(req, branch)
        spec: UnionSpec = self.plan.stages[anyof].node.attrs["spec"]
        self._deliver(req, anyof, pick(spec, port, table))

    def _kill_branch(self, req: Request, branch: frozenset[str]) -> None:
        req.dead |= branch
        for stage in branch:
            item = req.pending.pop(stage, None)
            if item is not None:
                self._cancel(item)

    def _ready(self, req: Request, sp: StagePlan) -> None:
        inputs = {port: req.values[src] for src, port in self._inputs[sp.name]}
        if sp.rowwise and all(len(t) == 0 for t in inputs.values()):
            self._deliver(req, sp.name, empty(sp.schema))
            return
        first = next(iter(inputs.values()))
        keys: list[Hashable] = []
        if sp.locality is not None and sp.locality.key is not None and len(sp.workers) > 1:
            keys = first.column(sp.locality.key)
        item = Item(req, sp.name, inputs, len(first), time.monotonic(), keys)
        req.pending[sp.name] = item
        self.queues[sp.name].append(item)
        self._pump()

    def _stage_failed(self, req: Request, stage: str, error: BaseException) -> None:
        """A stage failed for ``req``: fail the request, unless a competing branch can still answer."""
        for anyof, branches in self.plan.branches.items():
            if anyof in req.fired:
                continue
            for branch in branches:
                if stage in branch:
                    others = [b for b in branches if b is not branch and not b <= req.dead]
                    if others:
                        self._kill_branch(req, branch)
                        return
        self._fail(req, error)

    # -- dispatching -----------------------------------------------------------------------------------------
    def _pump(self) -> None:
        """Give every free worker a batch, as long as there is one to give: from its home stages first (oldest
        request first), then from any stage it hosts."""
        now = time.monotonic()
        progress = True
        while progress:
            progress = False
            for slot in self.slots:
                if slot.ready and slot.busy is None and self._give(slot, now):
                    progress = True

    def _give(self, slot: WorkerSlot, now: float) -> bool:
        mine = [s for s, q in self.queues.items() if q and slot.index in self.plan.stages[s].workers]
        mine.sort(key=lambda s: (self.plan.stages[s].home not in (None, slot.index), self.queues[s][0].since))
        for stage in mine:
            sp, queue = self.plan.stages[stage], self.queues[stage]
            routed = sp.locality is not None and len(sp.workers) > 1
            if routed:
                free = [s for s in (self.slots[w] for w in sp.workers) if s.ready and s.busy is None]
                if max(free, key=lambda s: self._score(s, queue[0])) is not slot:
                    continue  # a free replica that caches more of the oldest request's keys takes it
            view: deque[Item] | list[Item] = self._by_locality(slot, queue, now) if routed else queue
            decision = self.batchers[stage].decide(view, now)
            if decision.take == 0:
                self._wake_at(stage, decision.wake)
                continue
            self._dispatch(sp, slot, list(itertools.islice(view, decision.take)), decision)
            return True
        return False

    def _score(self, slot: WorkerSlot, item: Item) -> tuple[int, int, bool]:
        """How well ``slot`` suits ``item`` by locality: the request's keys it caches; then, for keys nobody
        caches yet, the emptier cache, then the first key's hash (so new keys spread over the replicas and
        each stays where it was first fetched)."""
        sp = self.plan.stages[item.stage]
        if sp.locality is None or not item.keys:
            return 0, 0, False
        cached = self.cached[slot.index].get(sp.locality.store.name, set())
        first = sp.workers[hash(item.keys[0]) % len(sp.workers)]
        return sum(k in cached for k in item.keys), -len(cached), first == slot.index

    def _by_locality(self, slot: WorkerSlot, queue: deque[Item], now: float) -> list[Item]:
        """The queue as this replica should take it: requests whose keys it caches first, but never one that
        waited past ``STARVE``."""
        head = list(itertools.islice(queue, SCAN))
        old = [i for i in head if now - i.since > STARVE]
        rest = sorted((i for i in head if now - i.since <= STARVE), key=lambda i: self._score(slot, i),
                      reverse=True)
        return old + rest

    def _wake_at(self, stage: str, when: float | None) -> None:
        if when is None or stage in self._wake or self._loop is None:
            return

        def wake() -> None:
            self._wake.pop(stage, None)
            self._pump()
        self._wake[stage] = self._loop.call_at(self._loop.time() + max(0.0, when - time.monotonic()), wake)

    def _dispatch(self, sp: StagePlan, slot: WorkerSlot, items: list[Item], decision: Decision) -> None:
        queue = self.queues[sp.name]
        for item in items:
            queue.remove(item)
        batch = Batch(next(self._batch_ids), slot, sp.name, items, decision.pad)
        now = time.monotonic()
        for item in items:
            item.batch = batch.id
            self.metrics.waited(sp.name, now - item.since)
        slot.busy = batch
        self.batches[batch.id] = batch
        pads = {op: decision.pad for op in sp.batched_ops} if decision.pad else None
        try:
            slot.send(("run", batch.id, sp.name, [(k, i.inputs, i.req.deadline) for k, i in enumerate(items)],
                       pads))
            for item in items:  # sent: the worker holds them now, and this side's arrays (views on other
                item.inputs = {}  # processes' stores, when forwarded) must not outlive the send
        except Exception as e:  # the worker is gone: its receiver thread reports the death
            self.batches.pop(batch.id, None)
            for item in items:
                self._stage_failed(item.req, sp.name, OperatorFailed(
                    f"stage {sp.name!r} could not be sent to worker {slot.index}: {e}", sp.name))
            slot.busy = None

    def _cancel(self, item: Item) -> None:
        """Withdraw ``item``: from its queue, or, if its whole batch gave up, interrupt the worker."""
        item.cancelled = True
        if item.batch is None:
            queue = self.queues[item.stage]
            if item in queue:
                queue.remove(item)
            return
        batch = self.batches.get(item.batch)  # None: it answered already
        if self.interrupt and batch is not None and batch.kill is None \
                and all(i.cancelled for i in batch.items):
            batch.slot.cancel(batch.id)
            self.metrics.count(self.metrics.cancelled, batch.stage)
            assert self._loop is not None
            batch.kill = self._loop.call_later(self.kill_grace, self._kill_stuck, batch)

    def _kill_stuck(self, batch: Batch) -> None:
        if batch.id in self.batches and batch.slot.busy is batch:
            batch.slot.kill()

    # -- what workers say ------------------------------------------------------------------------------------
    def _on_message(self, slot: WorkerSlot, msg: Any) -> None:
        if msg[0] == "ready":
            slot.ready = True
            started = self._all_ready
            if started is not None and not started.done() and all(s.ready for s in self.slots):
                started.set_result(None)
            self._pump()
            return
        _, batch_id, results, timings, caches = msg
        batch = self.batches.pop(batch_id, None)
        if batch is None:
            return
        if batch.kill is not None:
            batch.kill.cancel()
        slot.busy = None
        self._record(slot, batch, timings, caches)
        sp = self.plan.stages[batch.stage]
        for k, result in results:
            item = batch.items[k]
            req = item.req
            if item.cancelled or req.future.done() or sp.name in req.dead:
                continue
            if isinstance(result, Failure):
                self._stage_failed(req, sp.name, _error(result, sp.name))
            else:
                self._deliver(req, sp.name, result)
        self._pump()

    def _record(self, slot: WorkerSlot, batch: Batch, timings: list[tuple[str, float, int]],
                caches: dict[str, tuple[list[Hashable], list[Hashable]]]) -> None:
        total = 0.0
        for op, seconds, rows in timings:
            self.metrics.ran(op, seconds, rows)
            total += seconds
        sp = self.plan.stages[batch.stage]
        if sp.batch and timings:
            self.batchers[batch.stage].observe(batch.pad or sp.batch, total)
        for store, (added, evicted) in caches.items():
            keys = self.cached[slot.index].setdefault(store, set())
            keys.update(added)
            keys.difference_update(evicted)

    def _on_death(self, slot: WorkerSlot, why: str) -> None:
        if self._closing:
            return
        starting = self._all_ready
        if starting is not None and not starting.done():  # a worker that never got going: say why, stop
            starting.set_exception(ServeError(f"worker {slot.index} could not start ({why}); its output "
                                              "above has the details"))
            return
        self.metrics.count(self.metrics.restarts)
        batch, slot.busy = slot.busy, None
        self.cached[slot.index] = {}
        if batch is not None:
            self.batches.pop(batch.id, None)
            for item in batch.items:
                if not item.cancelled and not item.req.future.done():
                    members = list(self.plan.stages[batch.stage].members)
                    self._stage_failed(item.req, batch.stage, OperatorFailed(
                        f"worker {slot.index} died ({why}) while running stage {batch.stage!r} (operators "
                        f"{members}); it is being restarted", batch.stage))
        assert self._loop is not None
        self._loop.call_later(min(5.0, 0.05 * 2 ** min(slot.restarts, 6)), self._restart, slot)

    def _restart(self, slot: WorkerSlot) -> None:
        if not self._closing and slot in self.slots:
            slot.restart()


def _error(f: Failure, stage: str) -> BaseException:
    if f.kind == "lookup":
        return LookupKeyError(f.message)
    if f.kind == "deadline":
        return DeadlineExceeded(f"request missed its deadline before stage {stage!r} ran")
    e = OperatorFailed(f.message, f.operator or stage)
    e.trace = f.trace  # type: ignore[attr-defined]
    return e
