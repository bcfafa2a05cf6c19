"""Steady-state timing of alternatives on one (possibly shared) machine: what the plan choice, ``reflow
parallelize --runtime auto`` and the ONNX benchmarks measure by.

Policy. Each alternative runs a block of calls in a row and only the calls after the first are timed: the
first pays for the previous alternative's leftovers (memory to map again, thread pools still spinning on a
small box), so each is timed in its own steady state, as a server running one model is. Timing single calls
in turn charged every alternative for another's leftovers instead (1.5-2x slower calls on the 2-core VM,
onnxruntime's more than reflow's; docs/benchmarks.md, issue 18 round 5). Leftovers outlast the untimed call
(perhaps a torch OpenMP team still spinning): each block starts after a pause (50 ms), and the blocks run in
the orders of a balanced Latin square (a Williams design): over a full cycle of rounds every alternative
follows every other equally often, where the rotation used before always put each after the same one
(mobilenet_v2 at batch 1: the same module timed 8.2-8.3 ms after onnxruntime's blocks, 10.3 ms right after
torch's serial run on two threads; onnxruntime 2.2 or 6.4 ms by its place; with the pause every variant's
time held within 4% over two runs). The rounds spread each alternative over the whole run, so a slow
stretch of a shared box hits every alternative alike.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping


def steady_medians(
    fns: Mapping[str, Callable[[], object]], calls: int = 12, block: int = 5, settle: float = 0.05
) -> tuple[dict[str, float], list[dict[str, float]]]:
    """Median seconds per call of each alternative over about ``calls`` timed calls, and the medians of each
    round (for the spread of a ratio between alternatives). ``block`` >= 2 calls per alternative and round;
    ``settle`` seconds of sleep before each block, for the previous one's thread pools to stop spinning."""
    if block < 2:
        raise ValueError(f"block must be >= 2 (its first call is not timed), got {block}")
    for fn in fns.values():  # warm up: first calls allocate, JIT and start thread pools
        fn()
    names = list(fns)
    orders = balanced_orders(len(names))
    times: dict[str, list[float]] = {k: [] for k in fns}
    rounds: list[dict[str, float]] = []
    for r in range(max(1, -(-calls // (block - 1)))):
        this: dict[str, list[float]] = {k: [] for k in fns}
        for k in (names[i] for i in orders[r % len(orders)]):
            time.sleep(settle)
            fns[k]()  # pays for the previous alternative's leftovers: not timed
            for _ in range(block - 1):
                t0 = time.perf_counter()
                fns[k]()
                this[k].append(time.perf_counter() - t0)
            times[k] += this[k]
        rounds.append({k: statistics.median(v) for k, v in this.items()})
    return {k: statistics.median(v) for k, v in times.items()}, rounds


def balanced_orders(n: int) -> list[list[int]]:
    """Orders of ``n`` alternatives in which each one directly follows each other one equally often: ``n``
    orders for an even ``n``, ``2n`` for an odd one (each also reversed). Row r is the first row plus r, the
    first being 0, 1, n-1, 2, n-2, ... (a Williams design)."""
    first = [0] + [(j + 1) // 2 if j % 2 else n - j // 2 for j in range(1, n)]
    rows = [[(x + r) % n for x in first] for r in range(n)]
    return rows + [row[::-1] for row in rows] if n % 2 and n > 1 else rows
