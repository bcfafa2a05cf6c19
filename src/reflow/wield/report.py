"""The report of one experiment, or of two side by side: a Markdown page and PNG plots.

Per env: final scores (mean, std, IQM with its stratified-bootstrap CI) and the learning curves (IQM over
seeds at each step of a common grid, with a 95% bootstrap band). Across envs: scores normalised per env to
[0 = the first run's lowest curve value, 1 = the env's target return, or the best score seen], aggregated
as IQM, mean and median with CIs, and a performance profile. With two experiments: their difference in IQM
with its CI, the probability of improvement and a permutation-test p-value.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from reflow.errors import WieldError
from reflow.wield.stats import compare, iqm, mean, median, performance_profile, stratified_bootstrap
from reflow.wield.store import Run


def score_matrix(runs: Sequence[Run], envs: Sequence[str]) -> np.ndarray:
    """Scores as (seeds, envs); every env must have the same number of runs."""
    cols = [[r.score for r in runs if r.env_id == e] for e in envs]
    if len({len(c) for c in cols}) != 1:
        raise WieldError(
            f"envs have different numbers of runs ({[len(c) for c in cols]}); the stratified "
            "bootstrap needs the same seeds on every env"
        )
    return np.array(cols, dtype=np.float64).T


def normalizers(experiments: dict[str, list[Run]], envs: Sequence[str]) -> dict[str, tuple[float, float]]:
    """(low, high) per env: the lowest curve value any run started from, and the target (or best score)."""
    from reflow.rl.config import default_target

    out = {}
    for e in envs:
        runs = [r for rs in experiments.values() for r in rs if r.env_id == e]
        starts = [r.curve[0][1] for r in runs if r.curve] or [min(r.score for r in runs)]
        target = default_target(e)
        high = target if target is not None else max(r.score for r in runs)
        low = min(starts)
        out[e] = (low, high if high > low else low + 1.0)
    return out


def curve_band(runs: Sequence[Run], grid: np.ndarray, seed: int = 0) -> tuple[np.ndarray, ...]:
    """IQM over runs of their curves interpolated on ``grid``, with a 95% bootstrap band."""
    rows = np.array(
        [
            np.interp(grid, [s for s, _ in r.curve], [v for _, v in r.curve])
            if r.curve
            else np.full(len(grid), r.score)
            for r in runs
        ]
    )
    est = [stratified_bootstrap(rows[:, i], iqm, reps=300, seed=seed) for i in range(len(grid))]
    return (np.array([e.value for e in est]), np.array([e.low for e in est]), np.array([e.high for e in est]))


def write_report(experiments: dict[str, list[Run]], out: Path) -> Path:
    """Write ``report.md``, ``curves.png`` and ``profile.png`` under ``out``; returns the Markdown's path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not experiments or any(not rs for rs in experiments.values()):
        raise WieldError("nothing to report: an experiment has no runs")
    out.mkdir(parents=True, exist_ok=True)
    names = list(experiments)
    envs = sorted({r.env_id for rs in experiments.values() for r in rs})
    norm = normalizers(experiments, envs)
    lines = [f"# Wield report: {' vs '.join(names)}", ""]
    for name, runs in experiments.items():
        revs = sorted({r.revision for r in runs})
        lines += [
            f"**{name}**: {runs[0].algo}, {len(runs)} runs, seeds "
            f"{sorted({r.seed for r in runs})}, code revision {', '.join(revs)}",
            "",
        ]
    lines += [
        "## Final scores per env",
        "",
        "| experiment | env | runs | mean | std | IQM [95% CI] |",
        "|---|---|---|---|---|---|",
    ]
    for name, runs in experiments.items():
        for e in envs:
            s = np.array([r.score for r in runs if r.env_id == e])
            if len(s):
                lines.append(
                    f"| {name} | {e} | {len(s)} | {s.mean():.1f} | {s.std():.1f} | "
                    f"{stratified_bootstrap(s, iqm)} |"
                )
    lines += [
        "",
        "## Aggregate (normalised: 0 = starting return, 1 = target)",
        "",
        "| experiment | IQM | mean | median |",
        "|---|---|---|---|",
    ]
    normalized: dict[str, np.ndarray] = {}
    for name, runs in experiments.items():
        m = score_matrix(runs, envs)
        lows = np.array([norm[e][0] for e in envs])
        highs = np.array([norm[e][1] for e in envs])
        normalized[name] = (m - lows) / (highs - lows)
        x = normalized[name]
        lines.append(
            f"| {name} | {stratified_bootstrap(x, iqm)} | {stratified_bootstrap(x, mean)} | "
            f"{stratified_bootstrap(x, median)} |"
        )
    if len(names) == 2:
        c = compare(normalized[names[0]], normalized[names[1]])
        lines += [
            "",
            f"## {names[0]} vs {names[1]}",
            "",
            f"- IQM difference (normalised): {c.difference}",
            f"- probability of improvement P({names[0]} > {names[1]}): {c.probability_of_improvement:.3f}",
            f"- permutation test of the IQM difference: p = {c.p_value:.4f}"
            + (" (significant at 0.05)" if c.p_value < 0.05 else " (not significant at 0.05)"),
        ]
    fig, axes = plt.subplots(1, len(envs), figsize=(4.5 * len(envs), 3.5), squeeze=False)
    for ax, e in zip(axes[0], envs, strict=True):
        for name, runs in experiments.items():
            rs = [r for r in runs if r.env_id == e]
            last = max((r.curve[-1][0] for r in rs if r.curve), default=1)
            grid = np.linspace(0, last, 50)
            mid, lo, hi = curve_band(rs, grid)
            ax.plot(grid, mid, label=name)
            ax.fill_between(grid, lo, hi, alpha=0.25)
        ax.set_title(e)
        ax.set_xlabel("env steps")
        ax.set_ylabel("return (IQM over seeds, 95% CI)")
        ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(out / "curves.png")
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(5, 3.5))
    taus = np.linspace(-0.25, 1.25, 61)
    for name, x in normalized.items():
        prof, lo, hi = performance_profile(x, taus)
        ax.plot(taus, prof, label=name)
        ax.fill_between(taus, lo, hi, alpha=0.25)
    ax.set_xlabel("normalised score tau")
    ax.set_ylabel("fraction of runs with score > tau")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "profile.png")
    plt.close(fig)
    lines += [
        "",
        "## Plots",
        "",
        "![learning curves](curves.png)",
        "",
        "![performance profile](profile.png)",
        "",
    ]
    md = out / "report.md"
    md.write_text("\n".join(lines))
    return md
