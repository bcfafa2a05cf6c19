"""Dynamic batching: how many queued requests a stage's next batch takes, and how long to wait for more.

Three policies, one per kind of stage:

* **No batched model** (``batch == 0``): take what is queued, up to ``max_items`` requests, never wait. An
  idle server adds no latency; a busy one sends several requests per message.
* **Fixed** (``batch=B, max_wait_ms=W``): take requests until their rows fill B; if they do not, wait until
  the oldest has waited W, then go with what there is. The model is always called on B rows (padded), so a
  row's result does not depend on its batch-mates.
* **Adaptive** (``latency_target_ms=T``): the batch sizes are the powers of two up to B. The stage's measured
  time per batch of each size (a moving average) picks the largest size that takes at most half of T, so
  queueing gets the other half; a batch goes when that many rows are queued, or when waiting longer would
  miss T, padded to the smallest size that holds its rows. Sizes not measured yet are guessed optimistically
  (as if time grew with the square root of the size) so that each gets tried and measured. Outputs are then
  deterministic only for models whose results do not depend on the batch size (torch's do, in the last
  bits): use the fixed policy where bit-exact answers matter.
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
        n, rows = 0, 0
        for w in queue:
            if n and (rows + w.rows > goal or n >= self.max_items):
                break
            n, rows = n + 1, rows + w.rows
        if rows < goal and n == len(queue):
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

    def goal(self) -> int:
        """The adaptive batch size: the largest whose (estimated) time fits in half the latency target."""
        assert self.target is not None
        fits = [s for s in self.sizes if self.estimate(s) <= self.target / 2]
        return max(fits) if fits else self.sizes[0]

    def observe(self, size: int, seconds: float) -> None:
        """A batch padded to ``size`` rows took ``seconds``."""
        old = self.cost.get(size)
        self.cost[size] = seconds if old is None else (1 - EWMA) * old + EWMA * seconds
