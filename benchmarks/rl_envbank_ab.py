"""Claim: a change to the env bank leaves ``make_vec``'s Box path as fast as it was, against a base revision,
in one run.

The same A/B as ``transport_ab.py``: the base revision's ``reflow`` is loaded beside the working tree's as a
second package, ``reflow_base`` (``git archive REV src/reflow``), and the two take turns, round by round
(which goes first alternates), so both see the same host minute by minute. Each round builds a bank of each
side, resets it and times ``--steps`` lock-step steps with the same pre-drawn random actions, dropping each
batch of observations as a training loop that copies them does. Reported per configuration: the median over
rounds of each side's microseconds per vector step, and the median of the per-round ratio new / base.

    /work/bin/cpu-excl .venv/bin/python benchmarks/rl_envbank_ab.py --base main [--rounds 9] [--quick]

Configurations: CartPole-v1 (a 4-float Box observation: the bank's own overhead shows most) with 8 and 32
envs, in 1 process and in 2 (``fit_workers=False``, so both sides always use two). Writes
results/rl_envbank_ab.json.
"""

from __future__ import annotations

import argparse
import importlib
import json
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from transport_ab import export_base

CONFIGS = [(8, 1), (32, 1), (8, 2), (32, 2)]  # (envs, processes)
ENV_ID = "CartPole-v1"


def timed(make_vec: Any, envs: int, workers: int, actions: np.ndarray[Any, Any]) -> float:
    """Seconds per vector step of one freshly made bank over ``actions``."""
    with make_vec(ENV_ID, envs, num_workers=workers, fit_workers=False) as env:
        env.reset(seed=0)
        for a in actions[:20]:  # warm-up: caches, the workers' first spin
            env.step(a)
        t0 = time.perf_counter()
        for a in actions:
            env.step(a)
        return (time.perf_counter() - t0) / len(actions)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", default="main", help="the git revision to compare the working tree with")
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--steps", type=int, default=2000, help="timed vector steps per bank")
    ap.add_argument("--quick", action="store_true", help="3 rounds of 300 steps")
    ap.add_argument("--out", default="results/rl_envbank_ab.json")
    args = ap.parse_args()
    if args.quick:
        args.rounds, args.steps = 3, 300
    warnings.simplefilter("ignore")
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory(prefix="reflow-ab-") as tmp:
        sys.path.insert(0, str(export_base(args.base, Path(tmp))))  # before the fork server starts
        sides = {side: importlib.import_module(f"{package}.rl").make_vec
                 for side, package in (("base", "reflow_base"), ("new", "reflow"))}
        times: dict[str, dict[str, list[float]]] = {}
        for r in range(args.rounds):
            for envs, workers in CONFIGS:
                actions = rng.integers(0, 2, (args.steps, envs))
                order = list(sides) if r % 2 else list(sides)[::-1]
                for side in order:
                    key = f"{envs} envs, {workers} proc"
                    times.setdefault(key, {}).setdefault(side, []).append(
                        timed(sides[side], envs, workers, actions))
            print(f"round {r + 1}/{args.rounds} done", flush=True)
    rows = []
    print(f"\n{ENV_ID}, us per vector step (median of {args.rounds} rounds, range); base = {args.base}")
    print(f"{'config':<20} {'base':>20} {'working tree':>20} {'new/base':>9}")
    for key, t in times.items():
        old, new = t["base"], t["new"]
        ratio = statistics.median(b / a for a, b in zip(old, new, strict=True))
        spans = [f"{statistics.median(x) * 1e6:8.1f} ({min(x) * 1e6:.0f}-{max(x) * 1e6:.0f})"
                 for x in (old, new)]
        print(f"{key:<20} {spans[0]:>20} {spans[1]:>20} {ratio:8.3f}x")
        rows.append({"config": key, "base_us": [x * 1e6 for x in old], "new_us": [x * 1e6 for x in new],
                     "median_ratio": ratio})
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"base": args.base, "env": ENV_ID, "rounds": args.rounds, "steps": args.steps,
                               "rows": rows}, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
