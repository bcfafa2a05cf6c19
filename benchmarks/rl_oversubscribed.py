"""Claim: with fewer free cores than workers, make_vec no longer falls below gymnasium's SyncVectorEnv.

A lock-step bank waits at every step for its slowest process; when another job holds a core, two processes
share the one left and each step pays for the hand-off (0.72x a plain loop was measured before). Since the
bank measures the free cores when it starts and steps in fewer processes when they are short
(``fit_workers``, on by default), it should stay at or above SyncVectorEnv. Side by side, in one process run,
on the same envs and pre-drawn actions, under two conditions:

* ``free``      nothing else runs (every core free);
* ``one busy``  one other process spins on a core for the whole condition (``while True: pass``);

these systems, built outside the timing (the bank measures its cores then):

* ``sync``            ``gymnasium.vector.SyncVectorEnv``;
* ``reflow w1``       ``make_vec(..., num_workers=1)``: every env stepped by the calling process;
* ``reflow w2 kept``  ``make_vec(..., num_workers=2, fit_workers=False)``: two processes whatever the load
                      (the bank before this change);
* ``reflow w2``       ``make_vec(..., num_workers=2)``: the default, which steps in fewer processes when the
                      cores are short.

Throughput is env steps per second over a fixed number of vector steps, the median over interleaved repeats
(one run of every system per round); ratios are against ``sync`` in the same condition. The JSON records the
processes each bank used and the free cores it found. Writes results/rl_oversubscribed.json.

    flock -x /tmp/reflow-cpu.lock .venv/bin/python benchmarks/rl_oversubscribed.py            # full run
    flock -x /tmp/reflow-cpu.lock .venv/bin/python benchmarks/rl_oversubscribed.py --quick    # a short run
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from reflow.errors import OversubscribedWarning
from reflow.rl import make_vec

ENV_ID = "CartPole-v1"
SYSTEMS: dict[str, Callable[[int], Any]] = {
    "sync": lambda n: gym.vector.SyncVectorEnv([lambda: gym.make(ENV_ID) for _ in range(n)]),
    "reflow w1": lambda n: make_vec(ENV_ID, n, num_workers=1),
    "reflow w2 kept": lambda n: make_vec(ENV_ID, n, num_workers=2, fit_workers=False),
    "reflow w2": lambda n: make_vec(ENV_ID, n, num_workers=2),
}


@contextmanager
def one_core_busy(busy: bool) -> Iterator[None]:
    """Another process spinning on one core meanwhile (if ``busy``)."""
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if busy else None
    try:
        time.sleep(0.5 if busy else 0.0)  # let it get going before banks measure their cores
        yield
    finally:
        if hog is not None:
            hog.kill()
            hog.wait()


def timed_run(make: Callable[[int], Any], actions: np.ndarray[Any, Any]) -> tuple[float, dict[str, Any]]:
    """Env steps per second over ``len(actions)`` vector steps, and how the bank ran (if it is one)."""
    env = make(actions.shape[1])
    try:
        env.reset(seed=0)
        t0 = time.perf_counter()
        for a in actions:
            env.step(a)
        seconds = time.perf_counter() - t0
        bank = getattr(env, "bank", None)
        stats = {} if bank is None else {"processes": bank.stats.workers, "free_cores": bank.stats.free_cores}
    finally:
        env.close()
    return actions.size / seconds, stats


def describe(bank: dict[str, Any]) -> str:
    if not bank:
        return "-"
    free = bank["free_cores"]
    return f"{bank['processes']} ({'-' if free is None else f'{free:.1f}'})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer steps and repeats")
    parser.add_argument("--envs", type=int, default=32, help="number of envs (default 32)")
    parser.add_argument("--out", type=Path, default=Path("results"))
    args = parser.parse_args()
    steps, repeats = (200, 3) if args.quick else (1000, 7)
    actions = np.random.default_rng(0).integers(0, 2, (steps, args.envs))
    warnings.simplefilter("ignore", OversubscribedWarning)
    results: dict[str, Any] = {}
    for condition, busy in (("free", False), ("one busy", True)):
        rates: dict[str, list[float]] = {name: [] for name in SYSTEMS}
        stats: dict[str, list[dict[str, Any]]] = {name: [] for name in SYSTEMS}
        with one_core_busy(busy):
            for _ in range(repeats):
                for name, make in SYSTEMS.items():
                    rate, how = timed_run(make, actions)
                    rates[name].append(rate)
                    stats[name].append(how)
        medians = {name: statistics.median(r) for name, r in rates.items()}
        results[condition] = {"steps_per_s": rates, "median": medians,
                              "vs_sync": {k: v / medians["sync"] for k, v in medians.items()}, "banks": stats}
    print(f"{ENV_ID}, {args.envs} envs, {steps} vector steps, median of {repeats} (cpus: {os.cpu_count()})")
    print(f"{'condition':<10} {'system':<16} {'steps/s':>10} {'vs sync':>8}  processes (free cores found)")
    for condition, r in results.items():
        for name in SYSTEMS:
            how = ", ".join(describe(b) for b in r["banks"][name])
            rate, ratio = r["median"][name], r["vs_sync"][name]
            print(f"{condition:<10} {name:<16} {rate:>10,.0f} {ratio:>7.2f}x  {how}")
    args.out.mkdir(parents=True, exist_ok=True)
    meta = {"env": ENV_ID, "envs": args.envs, "steps": steps, "repeats": repeats,
            "cpus": os.cpu_count()}
    (args.out / "rl_oversubscribed.json").write_text(json.dumps({"meta": meta, "results": results}, indent=1))
    print(f"wrote {args.out / 'rl_oversubscribed.json'}")


if __name__ == "__main__":
    main()
