"""Index expressions and conditions: normal forms, evaluation over points and grids, boxes and ranges."""

from __future__ import annotations

import pytest
import torch

from reflow.recurrent.boxes import expr_range, restrict
from reflow.recurrent.conditions import TRUE, conj, negate
from reflow.recurrent.symbolic import Slice, lift, smax, smin, var

t, T, i = var("t"), var("T"), var("i")


def test_affine_forms_normalize() -> None:
    assert ((t + 1) - 1).same(t)
    assert (t + t - t).same(t)
    assert str(t - 1) == "t-1" and str(T - t) == "T-t" and str(t + T) == "t+T" and str(2 * t + 3) == "2*t+3"
    assert smin(t + 3, t + 1).same(t + 1) and smax(t, t + 2).same(t + 2)
    assert (smin(t + 2, T) - 1).same(smin(t + 1, T - 1))


def test_evaluation_on_points_and_grids() -> None:
    e = smin(t + 3, T)
    assert e.ev({"t": 5, "T": 7}) == 7
    grid = e.ev({"t": torch.arange(6), "T": 7})
    assert grid.tolist() == [3, 4, 5, 6, 7, 7]
    assert (i % 3).ev({"i": 7}) == 1
    c = (t == 0) | ((t > 2) & (i % 2 == 0))
    assert [bool(c.ev({"t": k, "i": 2})) for k in range(5)] == [True, False, False, True, True]


def test_conditions_refuse_truth_values_and_negate() -> None:
    with pytest.raises(TypeError, match="no truth value"):
        bool(t == 0)
    assert negate(t < 3).ev({"t": 3}) and not negate(t < 3).ev({"t": 2})
    assert conj(TRUE, t >= 1).key == (t >= 1).key


def test_restrict_and_ranges() -> None:
    box = {"t": (0, 10), "i": (0, 4)}
    assert restrict(t == 0, box) == {"t": (0, 1), "i": (0, 4)}
    assert restrict((t >= 2) & (t < T - 1), {**box}) is None  # T not substituted: unknown
    assert restrict((t >= 2) & (t < 9), box) == {"t": (2, 9), "i": (0, 4)}
    assert restrict(i % 2 == 0, box) is None
    assert expr_range(smin(t + 3, lift(10)), {"t": (0, 10)}) == (3, 10)
    assert expr_range(smax(0, t - 2), {"t": (0, 10)}) == (0, 7)
    assert str(Slice(t, smin(t + 3, T))) == "t:min(t+3, T)"
