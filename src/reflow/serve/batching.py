"""Dynamic batching: how many queued requests a stage's next batch takes, and how long to wait for more.

Three policies, one per kind of stage:

* **No batched model** (``batch == 0``): take what is queued, up to ``max_items`` requests, never wait. An
  idle server adds no latency; a busy one sends several requests per message.
* **Fixed** (``batch=B, max_wait_ms=W``): take requests until their rows fill B; if they do not, wait until
  the oldest has waited W, then go with what there is. The model is always called on B rows (padded), so a
  row's result does not depend on its batch-mates.
* **Adaptive** (``latency_target_ms=T``): the batch sizes are the powers of two up to B, and the stage's
  measured time per batch of each size (a moving average) picks among them. While the queue is short, the
  goal is the largest size that takes at most half of T, so queueing gets the other half; a batch goes when
  that many rows are queued, or when waiting longer would miss T. Once more rows are queued than that goal
  (the queue builds: arrivals outrun batches of that size), the size is the one that answers the whole queue
  soonest, counting the time its rows will wait behind each other (``drain``), on all the stage's replicas.
  So under load batches grow, which raises throughput, instead of shrinking because each batch got slower.
  A batch is padded to the smallest size that holds its rows. Sizes not measured yet are guessed
  optimistically (as if time grew with the square root of the size) so that each gets tried and measured.
  Outputs are then deterministic only for models whose results do not depend on the batch size (torch's do,
  in the last bits): use the fixed policy where bit-exact answers matter.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from reflow.serve.plan import StagePlan

EWMA = 0.2


class Waiting(Protocol):
    """A request waiting for a stage: its rows and when it arrived (the queue's element)."""

    rows: int
    since: float


@dataclass(frozen=True)
class Decision:
    """Take the first ``take`` items now (0: wait until ``wake``), padding batched ops to ``pad`` rows."""

    take: int
    wake: float | None = None
    pad: int | None = None


class Batcher:
    """The batching policy of one stage (see the module docstring)."""

    def __init__(self, stage: StagePlan) -> None:
        self.batch, self.max_wait, self.target = stage.batch, stage.max_wait, stage.target
        self.max_items = stage.max_items
        self.replicas = max(1, len(stage.workers))
        self.sizes = [1 << i for i in range(max(1, self.batch).bit_length()) if 1 << i < self.batch]
        self.sizes.append(max(1, self.batch))
        self.cost: dict[int, float] = {}  # seconds per batch, by padded size

    def decide(self, queue: Sequence[Waiting], now: float) -> Decision:
        if not queue:
            return Decision(0)
        if not self.batch:
            return Decision(min(len(queue), self.max_items))
        goal = self.batch if self.target is None else self.goal()
        if self.max_items == 1:
            return Decision(1, None, None if self.target is None else self.bucket(queue[0].rows))
        building = False
        if self.target is not None:
            queued = sum(w.rows for w in queue)
            building = queued > goal
            if building:  # the queue builds: the size that clears it soonest, sent now
                goal = min((s for s in self.sizes if s >= goal), key=lambda s: (self.drain(queued, s), s))
        n, rows = 0, 0
        for w in queue:
            if n and (rows + w.rows > goal or n >= self.max_items):
                break
            n, rows = n + 1, rows + w.rows
        if rows < goal and n == len(queue) and not building:
            wait = self.max_wait if self.target is None else max(0.0, self.target - self.estimate(goal))
            if self.target is not None and self.max_wait:
                wait = min(wait, self.max_wait)
            if now < queue[0].since + wait:
                return Decision(0, queue[0].since + wait)
        return Decision(n, None, None if self.target is None else self.bucket(rows))

    def bucket(self, rows: int) -> int:
        """The smallest batch size that holds ``rows`` (the largest if none does)."""
        return next((s for s in self.sizes if s >= rows), self.sizes[-1])

    def estimate(self, size: int) -> float:
        """Seconds a batch of ``size`` takes: measured, or guessed from the nearest measured size."""
        if size in self.cost:
            return self.cost[size]
        known = [s for s in self.cost if s <= size] or sorted(self.cost)[:1]
        if not known:
            return 0.0
        k = max(known)
        return self.cost[k] * math.sqrt(size / k)

    def drain(self, rows: int, size: int) -> float:
        """Seconds until ``rows`` queued rows are answered in batches of ``size`` (the rest in one smaller
        batch), the batches shared out over the stage's replicas."""
        full, rest = divmod(rows, size)
        busy = full * self.estimate(size) + (self.estimate(self.bucket(rest)) if rest else 0.0)
        return max(self.estimate(size if full else self.bucket(rest)), busy / self.replicas)

    def goal(self) -> int:
        """The adaptive batch size: the largest whose (estimated) time fits in half the latency target."""
        assert self.target is not None
        fits = [s for s in self.sizes if self.estimate(s) <= self.target / 2]
        return max(fits) if fits else self.sizes[0]

    def observe(self, size: int, seconds: float) -> None:
        """A batch padded to ``size`` rows took ``seconds``."""
        old = self.cost.get(size)
        self.cost[size] = seconds if old is None else (1 - EWMA) * old + EWMA * seconds
