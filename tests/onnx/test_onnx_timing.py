"""Steady-state timing (reflow.onnx.timing), what plan and runtime choices and the ONNX benchmarks use."""

from __future__ import annotations

import time

import pytest

from reflow.onnx.timing import steady_medians


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
