"""Wield's statistics against independent oracles: scipy's trimmed mean for the IQM, a naive loop for the
stratified bootstrap, exhaustive counting for the probability of improvement; the permutation test finds
a real difference and not a fake one."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as scipy_stats

from reflow.errors import WieldError
from reflow.wield.stats import (
    compare,
    iqm,
    performance_profile,
    probability_of_improvement,
    stratified_bootstrap,
)


@pytest.mark.parametrize("shape", [(5, 1), (10, 3), (7, 4), (1, 8)])
def test_iqm_is_the_25_percent_trimmed_mean(shape: tuple[int, int]) -> None:
    x = np.random.default_rng(sum(shape)).normal(size=shape)
    assert iqm(x) == pytest.approx(scipy_stats.trim_mean(x, 0.25, axis=None))


def test_stratified_bootstrap_resamples_within_tasks() -> None:
    rng = np.random.default_rng(0)
    x = np.stack([rng.normal(0, 1, 10), rng.normal(100, 1, 10)], axis=1)  # two very different tasks
    est = stratified_bootstrap(x, np.mean, reps=500, seed=3)
    # naive oracle: the same draws, one task at a time
    draws = np.random.default_rng(3).integers(0, 10, size=(500, 10, 2))
    naive = [np.mean([x[draws[r, :, t], t] for t in range(2)]) for r in range(500)]
    lo, hi = np.percentile(naive, [2.5, 97.5])
    assert (est.low, est.high) == pytest.approx((lo, hi))
    assert est.low < x.mean() < est.high and est.high - est.low < 1.5  # a task never swamps the other
    again = stratified_bootstrap(x, np.mean, reps=500, seed=3)
    assert again == est  # seeded


def test_probability_of_improvement_counts_pairs() -> None:
    a = np.array([[1.0, 5.0], [2.0, 5.0], [3.0, 5.0]])
    b = np.array([[2.0, 4.0], [2.0, 6.0]])
    # task 0: pairs (1,2) loss (1,2) loss (2,2) tie (2,2) tie (3,2) win (3,2) win -> 3/6; task 1: 3 wins of 6
    assert probability_of_improvement(a, b) == pytest.approx((3 / 6 + 3 / 6) / 2)
    with pytest.raises(WieldError, match="2 and 1 tasks"):
        probability_of_improvement(a, b[:, :1])


def test_compare_detects_a_real_difference_and_not_a_fake_one() -> None:
    rng = np.random.default_rng(1)
    base = rng.normal(0.5, 0.1, size=(10, 3))
    better = base + 0.3
    c = compare(better, base, reps=500)
    assert c.p_value < 0.01 and c.difference.low > 0 and c.probability_of_improvement > 0.9
    same = compare(rng.normal(0.5, 0.1, size=(10, 3)), base, reps=500)
    assert same.p_value > 0.05 and same.difference.low < 0 < same.difference.high


def test_performance_profile_and_bad_input() -> None:
    x = np.array([[0.1, 0.6], [0.4, 0.9]])
    prof, lo, hi = performance_profile(x, np.array([0.0, 0.5, 1.0]), reps=200)
    assert prof.tolist() == [1.0, 0.5, 0.0] and np.all(lo <= prof) and np.all(prof <= hi)
    with pytest.raises(WieldError, match="NaN"):
        iqm(np.array([1.0, np.nan]))
    with pytest.raises(WieldError, match="at least one run"):
        iqm(np.zeros((0, 2)))
