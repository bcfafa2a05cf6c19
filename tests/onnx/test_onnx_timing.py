"""Steady-state timing (reflow.onnx.timing), what plan and runtime choices and the ONNX benchmarks use."""

from __future__ import annotations

import time
from collections import Counter
from itertools import pairwise

import pytest

from reflow.onnx.timing import balanced_orders, steady_medians


def test_the_call_after_a_switch_is_not_timed_and_blocks_rotate() -> None:
    order: list[str] = []

    def make(name: str) -> object:
        def call() -> None:
            if order and order[-1] != name:
                time.sleep(0.03)  # leftovers of the previous alternative: paid by the first call only
            order.append(name)

        return call

    medians, rounds = steady_medians({"a": make("a"), "b": make("b")}, calls=8, block=3)
    assert all(v < 0.015 for v in medians.values()), medians  # no timed call paid the 30 ms
    assert len(rounds) == 4 and all(set(r) == {"a", "b"} for r in rounds)
    blocks = [order[i] for i in range(2, len(order), 3)]  # after the two warm-up calls
    assert blocks == ["a", "b", "b", "a", "a", "b", "b", "a"]  # each round starts one later


def test_a_block_needs_a_timed_call() -> None:
    with pytest.raises(ValueError, match="block must be >= 2"):
        steady_medians({"a": lambda: None}, block=1)


@pytest.mark.parametrize("n", [2, 3, 4, 5, 6, 7])
def test_every_alternative_follows_every_other_equally_often(n: int) -> None:
    """A leftover that outlasts the untimed call must not always fall on the same alternative: over a full
    cycle of orders each ordered pair is adjacent equally often (the rotation had each after one only)."""
    orders = balanced_orders(n)
    assert len(orders) == (n if n % 2 == 0 else 2 * n)
    assert all(sorted(order) == list(range(n)) for order in orders)
    pairs = Counter((a, b) for order in orders for a, b in pairwise(order))
    assert set(pairs) == {(a, b) for a in range(n) for b in range(n) if a != b}
    assert len(set(pairs.values())) == 1


def test_steady_medians_runs_the_blocks_in_balanced_orders() -> None:
    order: list[str] = []
    fns = {k: (lambda k=k: order.append(k)) for k in "abc"}
    steady_medians(fns, calls=6, block=2)  # 6 rounds of one timed call each
    blocks = order[3::2]  # after the three warm-up calls, the first call of each block
    follows = Counter(pairwise(blocks))
    assert all(follows[(x, y)] >= 2 for x in "abc" for y in "abc" if x != y), follows


def test_a_pause_before_each_block_lets_leftovers_that_outlast_one_call_die_down() -> None:
    """A leftover that slows every call for 15 ms after another alternative ran (a pool still spinning)
    reaches the timed calls without a pause and none of them with a 20 ms one."""
    ends: dict[str, float] = {}

    def make(name: str) -> object:
        def call() -> None:
            now = time.perf_counter()
            if any(now - t < 0.015 for k, t in ends.items() if k != name):
                time.sleep(0.005)
            ends[name] = time.perf_counter()

        return call

    fns = {"a": make("a"), "b": make("b")}
    without, _ = steady_medians(fns, calls=4, block=3, settle=0.0)
    ends.clear()
    paused, _ = steady_medians(fns, calls=4, block=3, settle=0.02)
    assert max(without.values()) >= 0.004, without  # "a" follows "b" in every block: it paid each time
    assert all(v < 0.002 for v in paused.values()), paused
