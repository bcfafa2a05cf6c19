"""Return after a fixed budget: PPO on Hopper-v5 for 200k env steps, reflow vs Stable-Baselines3 vs CleanRL.

All three run CleanRL's ``ppo_continuous_action.py`` settings (reflow's Hopper-v5 preset holds them): 1 env,
2048 steps per rollout, 10 epochs of 64-sample minibatches, Adam 3e-4 decaying linearly to 0, gamma 0.99,
lambda 0.95, clip 0.2, no entropy bonus, value coefficient 0.5, gradient norm 0.5, 64x64 tanh actor and
critic, observations normalised and clipped to +-10, rewards scaled by a running return std and clipped to
+-10. SB3 gets them as its PPO defaults plus ``VecNormalize`` and a linear learning rate. CleanRL is its own
script, unmodified, given as ``--cleanrl PATH`` (a checkout of github.com/vwxyzjn/cleanrl) and run in a
subprocess; it targets gymnasium 0.29, so ``cleanrl_child`` adapts the two gymnasium 1.x API changes it meets
(``TransformObservation`` needs the observation space; vector envs autoreset on the next step and report
finished episodes as arrays, not a ``final_info`` list) without touching its algorithm.

Score: the mean return of the last 20 training episodes (raw rewards, from ``RecordEpisodeStatistics`` /
SB3's ``Monitor`` / reflow's episode records) when the budget is spent; wall and CPU seconds per run. Every
run is a child process (``--child``), so its CPU time (user + system, its own worker processes included) is
read from ``RUSAGE_CHILDREN``: on a shared machine that is steadier than wall time. Seeds run in turn, the
order of the systems rotating with the seed (``--systems`` picks some). One torch thread everywhere.

    nice -n 19 .venv/bin/python benchmarks/rl_hopper.py \
        --cleanrl ../cleanrl/cleanrl/ppo_continuous_action.py [--seeds 3] [--steps 200000] \
        [--log results/hopper.jsonl] [--systems reflow sb3 cleanrl] [--first-seed 0]
    .venv/bin/python benchmarks/rl_hopper.py --table results/hopper.jsonl
"""

from __future__ import annotations

import argparse
import json
import re
import resource
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from reflow.rl.config import resolve
from reflow.rl.train import train
from reflow.wield.stats import iqm, stratified_bootstrap

ENV, WINDOW = "Hopper-v5", 20


def run_reflow(seed: int, steps: int, script: Path | None) -> tuple[float, list[float]]:
    t0 = time.perf_counter()
    cfg = replace(resolve(ENV, "ppo"), seed=seed, total_steps=steps, target_return=None, eval_every=0)
    r = train(cfg)
    return time.perf_counter() - t0, [float(x) for x in r.episode_returns]


def run_child(name: str, seed: int, steps: int, script: Path | None) -> tuple[float, float, list[float]]:
    """Run one system in a child process (``--child``); wall and CPU seconds of the child and its returns."""
    cmd = [sys.executable, __file__, "--child", name, str(seed), str(steps), str(script or "")]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return wall, cpu, json.loads(out.strip().splitlines()[-1])


def run_sb3(seed: int, steps: int, script: Path | None) -> tuple[float, list[float]]:
    from stable_baselines3 import PPO
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize

    class Returns(BaseCallback):
        def __init__(self) -> None:
            super().__init__()
            self.returns: list[float] = []

        def _on_step(self) -> bool:
            self.returns += [float(i["episode"]["r"]) for i in self.locals["infos"] if "episode" in i]
            return True

    torch.set_num_threads(1)
    t0 = time.perf_counter()
    env = VecNormalize(make_vec_env(ENV, n_envs=1, seed=seed), gamma=0.99)
    model = PPO("MlpPolicy", env, learning_rate=lambda remaining: 3e-4 * remaining, seed=seed, device="cpu")
    cb = Returns()
    model.learn(total_timesteps=steps, callback=cb)
    env.close()
    return time.perf_counter() - t0, cb.returns


def run_cleanrl(seed: int, steps: int, script: Path | None) -> tuple[float, list[float]]:
    """CleanRL's script in a child process (``--cleanrl-child``); the episodic returns it prints are the
    data."""
    assert script is not None
    args = ["--env-id", ENV, "--total-timesteps", str(steps), "--seed", str(seed), "--no-cuda"]
    cmd = [sys.executable, __file__, "--cleanrl-child", str(script), *args]
    t0 = time.perf_counter()
    Path("results").mkdir(exist_ok=True)
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd="results").stdout
    seconds = time.perf_counter() - t0
    returns = [float(m) for m in re.findall(r"episodic_return=\[?([-0-9.e+]+)", out)]
    return seconds, returns


def cleanrl_child(script: Path, argv: list[str]) -> None:
    """Run CleanRL's script as ``__main__`` on gymnasium 1.x: same-step autoreset, finished episodes as the
    0.29-style ``final_info`` list, and ``TransformObservation`` keeping the env's observation space."""
    import runpy

    import gymnasium as gym

    torch.set_num_threads(1)

    class TransformObservation(gym.wrappers.TransformObservation):  # type: ignore[type-arg]
        def __init__(self, env: Any, func: Any, observation_space: Any = None) -> None:
            super().__init__(env, func, observation_space)

    class SyncVectorEnv(gym.vector.SyncVectorEnv):
        def __init__(self, env_fns: Any, **kwargs: Any) -> None:
            super().__init__(env_fns, autoreset_mode=gym.vector.AutoresetMode.SAME_STEP, **kwargs)

        def step(self, actions: Any) -> Any:
            obs, rew, term, trunc, infos = super().step(actions)
            if "final_info" in infos:
                final, mask = infos["final_info"], infos["_final_info"]
                infos["final_info"] = [
                    {"episode": {k: final["episode"][k][i] for k in ("r", "l")}} if mask[i] else None
                    for i in range(self.num_envs)
                ]
            return obs, rew, term, trunc, infos

    gym.wrappers.TransformObservation = TransformObservation  # type: ignore[misc]
    gym.vector.SyncVectorEnv = SyncVectorEnv  # type: ignore[misc]
    sys.argv = [str(script), *argv]
    runpy.run_path(str(script), run_name="__main__")


SYSTEMS = {"reflow": run_reflow, "sb3": run_sb3, "cleanrl": run_cleanrl}


def table(rows: list[dict[str, Any]]) -> None:
    print(
        f"\n| system | seeds | final return (last {WINDOW} episodes): IQM [95% CI] | mean | "
        "wall s: median | CPU s: median |"
    )
    print("|---|---|---|---|---|---|")
    for name in SYSTEMS:
        mine = [r for r in rows if r["system"] == name]
        if not mine:
            continue
        score = np.array([r["final_return"] for r in mine])
        est = stratified_bootstrap(score, iqm, reps=1000)
        secs = float(np.median([r["seconds"] for r in mine]))
        cpus = [r["cpu_seconds"] for r in mine if "cpu_seconds" in r]
        cpu = f"{np.median(cpus):.0f}" if cpus else "-"
        print(
            f"| {name} | {len(mine)} | {est.value:.0f} [{est.low:.0f}, {est.high:.0f}] | "
            f"{score.mean():.0f} | {secs:.0f} | {cpu} |"
        )


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--cleanrl-child":
        cleanrl_child(Path(sys.argv[2]), sys.argv[3:])
        return
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        name, seed, steps, script = sys.argv[2:6]
        _, returns = SYSTEMS[name](int(seed), int(steps), Path(script) if script else None)
        print(json.dumps(returns))
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cleanrl", type=Path, default=None, help="CleanRL's ppo_continuous_action.py")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--first-seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=200_000)
    ap.add_argument("--systems", nargs="+", choices=list(SYSTEMS), default=list(SYSTEMS))
    ap.add_argument("--log", type=Path, default=Path("results/hopper.jsonl"))
    ap.add_argument("--table", type=Path, nargs="+", default=None, help="only print the table of these logs")
    ap.add_argument("--quick", action="store_true", help="1 seed of 4096 steps (make bench)")
    args = ap.parse_args()
    if args.quick:
        args.seeds, args.steps = 1, 4096
    if args.table:
        table([json.loads(x) for p in args.table for x in p.read_text().splitlines() if x.strip()])
        return
    names = [n for n in args.systems if n != "cleanrl" or args.cleanrl is not None]
    if args.cleanrl is not None:
        args.cleanrl = args.cleanrl.resolve()
    args.log.parent.mkdir(parents=True, exist_ok=True)
    rows = []
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        k = seed % len(names)
        for name in names[k:] + names[:k]:
            seconds, cpu, returns = run_child(name, seed, args.steps, args.cleanrl)
            row = {
                "system": name,
                "seed": seed,
                "steps": args.steps,
                "seconds": seconds,
                "cpu_seconds": cpu,
                "episodes": len(returns),
                "final_return": float(np.mean(returns[-WINDOW:])) if returns else float("nan"),
            }
            rows.append(row)
            with args.log.open("a") as f:
                f.write(json.dumps(row) + "\n")
            print(
                f"{name:8s} seed {seed}: {row['final_return']:.0f} after {args.steps} steps, "
                f"{seconds:.0f} s, {cpu:.0f} s CPU",
                flush=True,
            )
    table(rows)


if __name__ == "__main__":
    main()
