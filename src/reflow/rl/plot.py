"""Learning-curve PNG for a training run (matplotlib, headless Agg backend)."""

from __future__ import annotations

from pathlib import Path


def plot_curve(curve: list[tuple[int, float]], path: Path, title: str, target: float | None) -> None:
    """Mean recent episode return against env steps, with the target as a dashed line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot([s for s, _ in curve], [r for _, r in curve], label="mean return (last 20 episodes)")
    if target is not None:
        ax.axhline(target, linestyle="--", color="gray", label=f"target {target:g}")
    ax.set_xlabel("env steps")
    ax.set_ylabel("episode return")
    ax.set_title(title)
    ax.legend(loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
