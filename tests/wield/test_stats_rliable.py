"""Wield's statistics against rliable itself (Agarwal et al. 2021, the library the field uses): the same
IQM and probability of improvement, and stratified-bootstrap CIs that agree within Monte Carlo error."""

from __future__ import annotations

import numpy as np
import pytest

from reflow.wield.stats import iqm, probability_of_improvement, stratified_bootstrap

rly = pytest.importorskip("rliable.library")
metrics = pytest.importorskip("rliable.metrics")


def scores(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(10, 3)) + np.array([0.0, 1.0, 2.0])  # 10 runs x 3 tasks, tasks on different scales
    return x, rng.normal(size=(10, 3))


@pytest.mark.parametrize("seed", [0, 3])
def test_iqm_and_probability_of_improvement_equal_rliables(seed: int) -> None:
    x, y = scores(seed)
    assert iqm(x) == pytest.approx(metrics.aggregate_iqm(x), rel=1e-12)
    assert probability_of_improvement(x, y) == pytest.approx(metrics.probability_of_improvement(x, y))


def test_stratified_bootstrap_ci_agrees_with_rliable() -> None:
    x, _ = scores(3)
    reps = 20_000
    ours = stratified_bootstrap(x, iqm, reps=reps)
    point, interval = rly.get_interval_estimates(
        {"x": x}, lambda s: np.array([metrics.aggregate_iqm(s)]), reps=reps
    )
    low, high = interval["x"].ravel()
    assert ours.value == pytest.approx(float(point["x"][0]))
    width = high - low
    assert ours.low == pytest.approx(low, abs=0.05 * width)  # percentiles of two independent resamplings
    assert ours.high == pytest.approx(high, abs=0.05 * width)
