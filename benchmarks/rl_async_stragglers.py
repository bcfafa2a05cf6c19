"""Claim: with envs whose steps take uneven time, ``make_async`` beats lock-step stepping (``make_vec``,
gymnasium's AsyncVectorEnv), because no process waits for the slowest one at every step.

The env is ``Jitter``: each step waits a random time (exponential, mean ``--mean-ms``, seeded per env) and
uses no CPU, like an env that waits on a remote simulator, a robot or a game server. Waiting, not computing,
so the effect shows on a 2-core machine too; CPU-heavy envs with stragglers (Atari and MuJoCo on 16 busy
cores) are measured by ``rl_sim_throughput.py``'s ``reflow async wN``. Every system makes the same number of
steps per env; throughput is env steps per second, the median of interleaved repeats. Waiting envs run in
parallel up to the number of processes, not of cores, so AsyncVectorEnv (a process per env) gains from its
process count alone: compare it at ``--workers`` equal to the number of envs.

    flock /tmp/reflow-bench.lock .venv/bin/python benchmarks/rl_async_stragglers.py [--quick]
        [--sizes 16 64] [--workers 4 16] [--mean-ms 1.0] [--repeats 3]

Writes results/rl_async_stragglers.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from tqdm import tqdm

from reflow.rl.envs import AsyncBankEnv, BankVectorEnv, EnvSpec
from reflow.rl.envs.async_env import collect, step_each

ENV_ID = "rl_async_stragglers:reflow-bench/Jitter-v0"  # module:id, so worker processes import this file
STEPS = 60


class Jitter(gym.Env[np.ndarray, int]):
    """Each step waits an exponential random time of mean ``mean_s`` (seeded by ``reset``)."""

    def __init__(self, mean_s: float = 1e-3) -> None:
        self.observation_space = spaces.Box(-1.0, 1.0, (4,), np.float32)
        self.action_space = spaces.Discrete(2)
        self.mean_s = mean_s
        self.rng = np.random.default_rng()

    def reset(self, *, seed: int | None = None,
              options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self.rng = np.random.default_rng(seed)
        return np.zeros(4, np.float32), {}

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        time.sleep(self.rng.exponential(self.mean_s))
        return np.zeros(4, np.float32), 1.0, False, False, {}


if "reflow-bench/Jitter-v0" not in gym.registry:
    gym.register("reflow-bench/Jitter-v0", entry_point=Jitter)


def run_lockstep(env: Any, n: int) -> None:
    for _ in range(STEPS):
        env.step(np.zeros(n, np.int64))


def run_async(env: AsyncBankEnv, n: int) -> None:
    """Every env makes STEPS steps; the caller serves whichever slice is back."""
    env.async_reset(seed=0)
    collect(env)
    step_each(env, np.zeros((STEPS, n), np.int64))


def bench(n: int, workers: int, mean_s: float, repeats: int) -> dict[str, float]:
    specs = [EnvSpec(ENV_ID, {"mean_s": mean_s}) for _ in range(n)]
    maker = [lambda: Jitter(mean_s)] * n
    systems: dict[str, Any] = {
        "gym async": gym.vector.AsyncVectorEnv(maker, context="fork"),
        f"reflow w{workers}": BankVectorEnv(specs, num_workers=workers),
        f"reflow async w{workers}": AsyncBankEnv(specs, num_workers=workers),
    }
    times: dict[str, list[float]] = {name: [] for name in systems}
    try:
        for _ in range(repeats):
            for name, env in systems.items():
                t0 = time.perf_counter()
                if isinstance(env, AsyncBankEnv):
                    run_async(env, n)
                else:
                    env.reset(seed=0)
                    run_lockstep(env, n)
                times[name].append(time.perf_counter() - t0)
    finally:
        for env in systems.values():
            env.close()
    return {name: n * STEPS / statistics.median(ts) for name, ts in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="*", type=int, default=[16, 64])
    parser.add_argument("--workers", nargs="*", type=int, default=[4, 16],
                        help="worker processes (gymnasium's AsyncVectorEnv always has one per env)")
    parser.add_argument("--mean-ms", type=float, default=1.0, help="mean step time of the env (default 1)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="16 envs, 2 repeats")
    parser.add_argument("--out", type=Path, default=Path("results"))
    args = parser.parse_args()
    if args.quick:
        args.sizes, args.repeats = [16], 2
    rows = []
    for n in tqdm(args.sizes, desc="sizes"):
        for w in [w for w in args.workers if w <= n]:
            rates = bench(n, w, args.mean_ms / 1e3, args.repeats)
            sync, asyn = rates[f"reflow w{w}"], rates[f"reflow async w{w}"]
            rows.append({"num_envs": n, "workers": w, "steps_per_s": rates, "async_vs_lockstep": asyn / sync,
                         "async_vs_gym_async": asyn / rates["gym async"]})
            tqdm.write(f"{n} envs, {w} workers: " + ", ".join(f"{k} {v:.0f}" for k, v in rates.items()))
    print(f"\n{'envs':>5}{'workers':>8}{'gym async':>11}{'lock-step':>11}{'async':>9}{'vs lock-step':>14}"
          f"{'vs gym':>8}")
    for r in rows:
        s, w = r["steps_per_s"], r["workers"]
        print(f"{r['num_envs']:>5}{w:>8}{s['gym async']:>11.0f}{s[f'reflow w{w}']:>11.0f}"
              f"{s[f'reflow async w{w}']:>9.0f}{r['async_vs_lockstep']:>13.2f}x"
              f"{r['async_vs_gym_async']:>7.2f}x")
    args.out.mkdir(parents=True, exist_ok=True)
    out = args.out / "rl_async_stragglers.json"
    meta = {"mean_ms": args.mean_ms, "steps": STEPS, "repeats": args.repeats}
    out.write_text(json.dumps({**meta, "rows": rows}, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
