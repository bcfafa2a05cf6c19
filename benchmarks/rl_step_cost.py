"""The cost of one env step of training, reflow's ``train`` vs Stable-Baselines3's ``learn``, few envs.

Where an agent trains on one env (PPO InvertedPendulum-v5, SAC Pendulum-v1, DQN Acrobot-v1: the RL Zoo's
settings) every env step crosses the whole per-step path: the env, the policy's forward pass, the learner's
bookkeeping, the reactor program's scheduling, and a share of the updates. Time to threshold (``rl_training.py
--part zoo``) mixes that cost with sample efficiency; this benchmark isolates it: a fixed budget of env steps
(no target, no evaluations), the same hyper-parameters on both sides (``rl_training.sb3_zoo`` and reflow's
presets), CPU seconds of this process per env step (steadier than wall time on a shared machine; one torch
thread, envs in this process on both sides). Repeats interleave the two sides, alternating which goes first;
the result is the ratio of medians, reflow / SB3 (< 1: reflow cheaper). A raw ``gymnasium`` env step is
reported beside it for scale.

    flock -x /tmp/reflow-cpu.lock .venv/bin/python benchmarks/rl_step_cost.py [--repeats 3] \
        [--tasks ppo-InvertedPendulum-v5 sac-Pendulum-v1 ...] [--out results/rl_step_cost.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from rl_training import sb3_zoo

from reflow.rl.config import resolve
from reflow.rl.train import train

# task -> env steps per run (enough for tens of updates; the updates' share is the same on both sides)
TASKS = {
    "ppo-InvertedPendulum-v5": 4096,
    "sac-Pendulum-v1": 600,
    "dqn-Acrobot-v1": 2048,
    "ppo-CartPole-v1": 8192,
}


def reflow_run(algo: str, env_id: str, steps: int) -> float:
    """CPU seconds of one reflow training run of ``steps`` env steps (build included)."""
    cfg = replace(resolve(env_id, algo), seed=0, total_steps=steps, target_return=None, eval_every=0)
    t0 = time.process_time()
    train(cfg)
    return time.process_time() - t0


def sb3_run(algo: str, env_id: str, steps: int) -> float:
    """CPU seconds of one SB3 run (model construction included)."""
    torch.set_num_threads(1)
    t0 = time.process_time()
    model, env = sb3_zoo(algo, env_id, 0)
    model.learn(total_timesteps=steps)
    env.close()
    return time.process_time() - t0


def raw_step_us(env_id: str, n: int = 2000) -> float:
    """CPU microseconds of one plain gymnasium env step (random actions, resets included)."""
    env = gym.make(env_id)
    env.reset(seed=0)
    env.action_space.seed(0)
    actions = [env.action_space.sample() for _ in range(n)]
    t0 = time.process_time()
    for a in actions:
        _, _, term, trunc, _ = env.step(a)
        if term or trunc:
            env.reset()
    env.close()
    return (time.process_time() - t0) / n * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", nargs="+", choices=list(TASKS), default=list(TASKS))
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--scale", type=float, default=1.0, help="multiply every step budget (--quick: 0.25)")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", type=Path, default=Path("results/rl_step_cost.json"))
    args = ap.parse_args()
    if args.quick:
        args.repeats, args.scale = 1, 0.25
    import warnings

    warnings.filterwarnings("ignore", message=".*mini-batch size.*")  # SB3 on 32-step rollouts
    sides = {"reflow": reflow_run, "sb3": sb3_run}
    out: dict[str, Any] = {}
    print("| task | envs | steps | raw env step us | reflow us/step | SB3 us/step | reflow / SB3 "
          "[min, max] |")
    print("|---|---|---|---|---|---|---|")
    for task in args.tasks:
        algo, env_id = task.split("-", 1)
        steps = max(256, int(TASKS[task] * args.scale))
        for run in sides.values():  # warm-up: imports, first builds
            run(algo, env_id, 256)
        times: dict[str, list[float]] = {k: [] for k in sides}
        for r in range(args.repeats):
            order = list(sides) if r % 2 == 0 else list(sides)[::-1]
            for name in order:
                times[name].append(sides[name](algo, env_id, steps) / steps * 1e6)
        ratios = [a / b for a, b in zip(times["reflow"], times["sb3"], strict=True)]
        med = {k: statistics.median(v) for k, v in times.items()}
        raw = raw_step_us(env_id)
        envs = resolve(env_id, algo).num_envs
        out[task] = {"steps": steps, "envs": envs, "raw_us": raw, "us_per_step": times,
                     "ratio_of_medians": med["reflow"] / med["sb3"]}
        print(
            f"| {task} | {envs} | {steps} | {raw:.0f} | {med['reflow']:.0f} | {med['sb3']:.0f} | "
            f"{med['reflow'] / med['sb3']:.2f} [{min(ratios):.2f}, {max(ratios):.2f}] |",
            flush=True,
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1))
    print(f"wrote {args.out}; load average {np.round(np.array(__import__('os').getloadavg()), 1).tolist()}")


if __name__ == "__main__":
    main()
