"""Aggregate RL results the way the field now does (Agarwal et al. 2021, "Deep RL at the edge of the
statistical precipice", the rliable library), with numpy only and an explicit seed.

Scores form a matrix ``(runs, tasks)``: one row per seed, one column per env, already normalised per task
(0 = a random policy, 1 = the target). The interquartile mean (IQM) is the mean of the middle 50% of all
scores; its confidence interval is the stratified bootstrap: resample runs with replacement *within each
task* (so every task keeps its weight), recompute the statistic, take percentiles. Comparing two
configurations: the probability of improvement P(X > Y) (Mann-Whitney's statistic, averaged over tasks)
and a permutation test of the IQM difference (runs of the two configurations reshuffled within each task).
A performance profile is the fraction of all scores above each threshold tau.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from reflow.errors import WieldError

Scores = np.ndarray  # (runs, tasks)
Statistic = Callable[[Scores], float]


def _matrix(scores: Scores) -> np.ndarray:
    x = np.asarray(scores, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2 or x.shape[0] < 1 or x.shape[1] < 1:
        raise WieldError(f"scores must be a (runs, tasks) matrix with at least one run, got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise WieldError("scores contain NaN or infinity; drop or fix the failed runs first")
    return x


def iqm(scores: Scores) -> float:
    """Interquartile mean of all scores: drop the lowest and highest floor(n/4), average the rest (what
    rliable computes with ``scipy.stats.trim_mean(x, 0.25)``)."""
    x = np.sort(_matrix(scores).ravel())
    cut = int(0.25 * x.size)
    return float(x[cut : x.size - cut].mean())


def mean(scores: Scores) -> float:
    return float(_matrix(scores).mean())


def median(scores: Scores) -> float:
    return float(np.median(_matrix(scores)))


@dataclass(frozen=True)
class Estimate:
    """A point estimate and its (1 - alpha) confidence interval."""

    value: float
    low: float
    high: float

    def __str__(self) -> str:
        return f"{self.value:.3f} [{self.low:.3f}, {self.high:.3f}]"


def stratified_bootstrap(
    scores: Scores, statistic: Statistic = iqm, reps: int = 2000, alpha: float = 0.05, seed: int = 0
) -> Estimate:
    """Percentile CI of ``statistic`` under resampling of runs within each task."""
    x = _matrix(scores)
    runs, tasks = x.shape
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, runs, size=(reps, runs, tasks))
    boot = np.array([statistic(np.take_along_axis(x, idx[r], axis=0)) for r in range(reps)])
    lo, hi = np.percentile(boot, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return Estimate(statistic(x), float(lo), float(hi))


def probability_of_improvement(x: Scores, y: Scores) -> float:
    """P(X > Y) averaged over tasks: for each task, the fraction of (run of x, run of y) pairs where x wins
    (ties count half)."""
    a, b = _matrix(x), _matrix(y)
    if a.shape[1] != b.shape[1]:
        raise WieldError(
            f"the two configurations have {a.shape[1]} and {b.shape[1]} tasks; compare them on the same envs"
        )
    wins = [
        ((a[:, t, None] > b[None, :, t]) + 0.5 * (a[:, t, None] == b[None, :, t])).mean()
        for t in range(a.shape[1])
    ]
    return float(np.mean(wins))


@dataclass(frozen=True)
class Comparison:
    """Configuration x against y: the IQM difference with its CI, P(X > Y), and the permutation p-value of
    the IQM difference (two-sided)."""

    difference: Estimate
    probability_of_improvement: float
    p_value: float


def compare(x: Scores, y: Scores, reps: int = 2000, seed: int = 0) -> Comparison:
    """Is x better than y? (see the module docstring)"""
    a, b = _matrix(x), _matrix(y)
    if a.shape[1] != b.shape[1]:
        raise WieldError(
            f"the two configurations have {a.shape[1]} and {b.shape[1]} tasks; compare them on the same envs"
        )
    rng = np.random.default_rng(seed)
    observed = iqm(a) - iqm(b)
    boot = np.empty(reps)
    perm = np.empty(reps)
    both = np.concatenate([a, b])
    for r in range(reps):
        ia, ib = rng.integers(0, len(a), (len(a), a.shape[1])), rng.integers(0, len(b), (len(b), b.shape[1]))
        boot[r] = iqm(np.take_along_axis(a, ia, 0)) - iqm(np.take_along_axis(b, ib, 0))
        shuffled = np.stack([rng.permutation(both[:, t]) for t in range(both.shape[1])], axis=1)
        perm[r] = iqm(shuffled[: len(a)]) - iqm(shuffled[len(a) :])
    lo, hi = np.percentile(boot, [2.5, 97.5])
    p = (1 + np.sum(np.abs(perm) >= abs(observed) - 1e-12)) / (reps + 1)
    return Comparison(Estimate(observed, float(lo), float(hi)), probability_of_improvement(a, b), float(p))


def performance_profile(
    scores: Scores, taus: np.ndarray, reps: int = 500, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fraction of scores above each tau, with a stratified-bootstrap 95% band: (profile, low, high)."""
    x = _matrix(scores)
    prof = np.array([(x > t).mean() for t in taus])
    rng = np.random.default_rng(seed)
    boots = np.empty((reps, len(taus)))
    for r in range(reps):
        s = np.take_along_axis(x, rng.integers(0, x.shape[0], x.shape), 0)
        boots[r] = [(s > t).mean() for t in taus]
    lo, hi = np.percentile(boots, [2.5, 97.5], axis=0)
    return prof, lo, hi
