"""The executor contract: how the scheduler gets reactions run, without ever calling a reaction body itself.

The deterministic scheduler (``reflow.runtime.scheduler``) decides *what* runs at each tag and in which
groups; an ``Executor`` decides *where* it runs. At every tag the scheduler walks the levels of the reaction
graph and, for each level, hands the executor one batch of ``Invocation``s. The reactions in a batch are
independent by construction (no port or declaration-order dependency between any two of them), so an
executor may run them in any order, on any thread or process, all at once. It returns one ``Result`` per
invocation, **in the order of the batch**; the scheduler applies the results in that order, which is what
makes the observable outcome the same for any executor and any number of workers.

The contract, in full:

* ``start(hosts, graph)`` is called once before the first batch. ``hosts`` maps each reactor's deterministic
  path (``"main.bank[3].filter"``) to the object that runs its reactions (a ``ReactionHost``: in practice the
  ``reflow.reactor.Reactor`` instance, which keeps its own state). ``graph`` is the reaction graph (a
  ``reflow.graph.Graph``, one node per reaction, op ``"reaction"``, ``attrs["reactor"]`` the reactor path,
  ``attrs["index"]`` the reaction's index in its reactor, ``node.cost`` the declared cost in seconds); a
  placement pass can cluster it to decide which process keeps which reactor. A process executor may pickle
  hosts into its workers: a host holds no thread, lock or runtime link once pickled, and all later
  communication is by invocations and results only.
* ``run_batch(batch)`` runs every invocation with ``host.react(invocation)`` on the host named by
  ``invocation.reactor`` and returns their results in batch order. It must not raise for an exception inside a
  reaction: that goes into ``Result.error``. It may raise for a failure of the executor itself (a dead worker
  process: ``reflow.errors.WorkerCrashed`` naming the reactors it held).
* Two invocations of the same reactor are never in one batch, so a host is never entered concurrently.
* ``close()`` releases every resource (threads, processes, shared memory); it is idempotent, and the scheduler
  calls it on every exit path (executors are context managers).
* ``measured_costs()`` returns the mean measured run time, in seconds, of each reaction run so far (keyed by
  reaction node name); a placement pass can feed it back with ``Graph.with_costs``.

Values in invocations and results are whatever the reactions put on ports: the thread executor passes
references; a process executor must copy them (pickle, or shared memory for arrays).

Notes for a process executor: pickle reactors after ``start`` is called (the program is assembled then, so
paths are fixed); a pickled reactor carries its own subtree but not its parent or the scheduler link. A
thread that a reactor starts inside a worker process therefore cannot schedule a physical action there
(``PhysicalAction.schedule`` raises ``LifecycleError``): physical actions belong to reactors kept in the
scheduler's process, or the executor must forward them with ``Scheduler.schedule_physical``. State a
reaction changes lives in the worker; the scheduler only ever sees results.
"""

from __future__ import annotations

import threading
import time
import traceback
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, NamedTuple, Protocol

from reflow.graph import Graph
from reflow.runtime.tag import Tag


class Invocation(NamedTuple):
    """One reaction to run at one tag (a named tuple: one is made per reaction run, and a tuple is made
    three times faster than a frozen dataclass).

    ``values`` holds the values *present* at this tag on the reaction's triggers, sources and effects (an
    output already written at this tag by an earlier reaction of the same reactor reads back), keyed by the
    port/action/timer path (``"main.filter.in"``); a trigger or source that is absent has no key. Timers,
    ``"@startup"`` and ``"@shutdown"`` appear with the value ``None`` when they fire. ``deadline_missed``
    tells the host to run the reaction's deadline handler instead of its body. ``start_time`` is the wall
    clock (``time.time_ns()``) at logical time zero, so that a host in any process can tell physical time
    since the start and absolute logical time.
    """

    reactor: str
    reaction: int
    name: str
    tag: Tag
    values: Mapping[str, Any]
    deadline_missed: bool = False
    start_time: int = 0


@dataclass(frozen=True)
class Scheduled:
    """An action scheduled by a reaction: ``key`` is the action's path, ``delay`` nanoseconds on top of the
    action's own minimum delay."""

    key: str
    delay: int
    value: Any = None


@dataclass
class Result:
    """What one invocation did. ``writes`` maps effect-port paths to the values written (last write wins)."""

    reactor: str
    reaction: int
    name: str
    writes: dict[str, Any] = field(default_factory=dict)
    schedules: list[Scheduled] = field(default_factory=list)
    stop: bool = False
    error: BaseException | None = None
    error_text: str = ""
    elapsed: float = 0.0


class ReactionHost(Protocol):
    """Whatever runs the reactions of one reactor (the reactor itself)."""

    def react(self, invocation: Invocation) -> Result:
        """Run one reaction (or its deadline handler); never raises for an error in the reaction body."""
        ...


class Executor(ABC):
    """Runs batches of independent invocations; see the module docstring for the contract."""

    workers: int

    def __init__(self) -> None:
        self._hosts: Mapping[str, ReactionHost] = {}
        self._cost_sum: dict[str, float] = {}
        self._cost_n: dict[str, int] = {}
        self._cost_lock = threading.Lock()

    def start(self, hosts: Mapping[str, ReactionHost], graph: Graph) -> None:
        """Called once before the first batch."""
        self._hosts = hosts

    @abstractmethod
    def run_batch(self, batch: Sequence[Invocation]) -> list[Result]:
        """Run every invocation; results in batch order."""

    def close(self) -> None:
        """Release every resource; idempotent. The base class only forgets its hosts."""
        self._hosts = {}

    def measured_costs(self) -> dict[str, float]:
        """Mean measured seconds per reaction node name, over the reactions run so far."""
        with self._cost_lock:
            return {k: self._cost_sum[k] / self._cost_n[k] for k in self._cost_sum}

    def _record(self, result: Result) -> None:
        with self._cost_lock:
            self._cost_sum[result.name] = self._cost_sum.get(result.name, 0.0) + result.elapsed
            self._cost_n[result.name] = self._cost_n.get(result.name, 0) + 1

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def run_invocation(host: ReactionHost, invocation: Invocation) -> Result:
    """Run one invocation on its host, timing it; a host that breaks the no-raise rule is caught here too."""
    t0 = time.perf_counter()
    try:
        result = host.react(invocation)
    except BaseException as exc:  # a host bug must still come back as a result, not kill a worker thread
        result = Result(invocation.reactor, invocation.reaction, invocation.name, error=exc,
                        error_text=traceback.format_exc())
    result.elapsed = time.perf_counter() - t0
    return result


class ThreadExecutor(Executor):
    """Runs each batch on ``workers`` threads: the scheduler's own thread plus ``workers - 1`` pool threads
    (1 = sequentially in the scheduler's thread).

    A batch is cut into ``workers`` contiguous chunks, one task per chunk, so that a wide batch of small
    reactions costs a few thread hand-offs, not one per reaction; the caller runs the first chunk itself.
    Threads pay off when reaction bodies release the GIL (numpy, torch, I/O).
    """

    def __init__(self, workers: int = 1) -> None:
        super().__init__()
        if workers < 1:
            raise ValueError(f"ThreadExecutor needs at least 1 worker, got {workers}")
        self.workers = workers
        self._pool: ThreadPoolExecutor | None = None

    def start(self, hosts: Mapping[str, ReactionHost], graph: Graph) -> None:
        super().start(hosts, graph)
        if self.workers > 1 and self._pool is None:
            self._pool = ThreadPoolExecutor(self.workers - 1, thread_name_prefix="reflow-reaction")

    def _chunk(self, chunk: Sequence[Invocation]) -> list[Result]:
        results = [run_invocation(self._hosts[inv.reactor], inv) for inv in chunk]
        for r in results:
            self._record(r)
        return results

    def run_batch(self, batch: Sequence[Invocation]) -> list[Result]:
        if self._pool is None or len(batch) == 1:
            return self._chunk(batch)
        n = min(self.workers, len(batch))
        size = -(-len(batch) // n)
        chunks = [batch[i:i + size] for i in range(0, len(batch), size)]
        futures = [self._pool.submit(self._chunk, c) for c in chunks[1:]]
        results = self._chunk(chunks[0])
        for f in futures:
            results.extend(f.result())
        return results

    def close(self) -> None:
        super().close()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
