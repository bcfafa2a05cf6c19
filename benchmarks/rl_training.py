"""Benchmark 3: training wall time.

Part A: PPO wall time to reach CartPole-v1's return threshold (mean of the last 20 episodes >= 475) over
several seeds: reflow with its envs in the calling process (``reflow``) and over 2 worker processes
(``reflow_w2``) vs Stable-Baselines3 PPO with matching hyper-parameters (16 envs, 64 steps per env per
rollout, 8 epochs, minibatch 256, lr 1e-3, gamma 0.99, lambda 0.95, clip 0.2, 64x64 tanh MLPs), interleaved.

Part B: synchronized parallel Q-learning: N env actors, one learner, one synchronous update per step (the DQN
training program of ``reflow.rl.train``, run with ``train_on`` on an open vector env). Only the env transport
differs: reflow's env bank over 2 worker processes vs one Ray actor per env. Same seeds, same number of
steps, interleaved repeats; ratio of medians.

Part A also runs RLlib PPO (new API stack, same hyper-parameters, ``benchmarks/rllib_ppo.py``) in a
subprocess per seed, from its own venv ``.venv-rllib`` made on first use (``ray[rllib]`` pins gymnasium 1.2,
reflow runs on 1.4). RLlib's clock starts after ``build_algo()`` (its env-runner actor is up); reflow's and
SB3's include their env start-up. ``--no-rllib`` skips it.

Usage: flock /tmp/reflow-bench.lock .venv/bin/python benchmarks/rl_training.py [--quick] [--no-rllib]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from reflow.rl.algos.dqn import DQNConfig
from reflow.rl.train import TrainConfig, train, train_on


def reflow_ppo(workers: int) -> Callable[[int, int], float]:
    """Seconds for reflow PPO with envs on ``workers`` processes to reach 475 (inf if not within budget)."""
    def timed(seed: int, budget: int) -> float:
        t0 = time.perf_counter()
        r = train(TrainConfig(seed=seed, total_steps=budget, num_workers=workers))
        return time.perf_counter() - t0 if r.reached_target else float("inf")
    return timed


def sb3_ppo(seed: int, budget: int) -> float:
    """Seconds for Stable-Baselines3 PPO (same hyper-parameters) to reach 475."""
    from stable_baselines3 import PPO
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env

    class Stop(BaseCallback):
        def __init__(self) -> None:
            super().__init__()
            self.returns: list[float] = []
            self.reached = False

        def _on_step(self) -> bool:
            for info in self.locals["infos"]:
                if "episode" in info:
                    self.returns.append(float(info["episode"]["r"]))
            self.reached = len(self.returns) >= 20 and float(np.mean(self.returns[-20:])) >= 475
            return not self.reached

    torch.set_num_threads(1)
    t0 = time.perf_counter()
    env = make_vec_env("CartPole-v1", n_envs=16, seed=seed)
    model = PPO("MlpPolicy", env, n_steps=64, batch_size=256, n_epochs=8, learning_rate=1e-3, gamma=0.99,
                gae_lambda=0.95, clip_range=0.2, ent_coef=0.0, vf_coef=0.5, max_grad_norm=0.5, seed=seed,
                policy_kwargs={"net_arch": [64, 64], "activation_fn": torch.nn.Tanh}, device="cpu")
    cb = Stop()
    model.learn(total_timesteps=budget, callback=cb)
    env.close()
    return time.perf_counter() - t0 if cb.reached else float("inf")


class RayVec:
    """One Ray actor per env, stepped synchronously: the vector env interface ``train_on`` needs (same-step
    reset, episode statistics in the infos)."""

    def __init__(self, env_id: str, n: int, seed: int) -> None:
        import ray

        @ray.remote
        class EnvActor:
            def __init__(self, seed: int) -> None:
                self.env = gym.make(env_id)
                self.seed = seed
                self.ret = 0.0

            def reset(self) -> Any:
                return self.env.reset(seed=self.seed)[0]

            def step(self, a: int) -> tuple[Any, ...]:
                obs, r, term, trunc, _ = self.env.step(a)
                self.ret += float(r)
                final, ep = None, None
                if term or trunc:
                    final, ep, self.ret = obs, self.ret, 0.0
                    obs = self.env.reset()[0]
                return obs, r, term, trunc, final, ep

        self.ray = ray
        self.actors = [EnvActor.remote(seed + i) for i in range(n)]  # type: ignore[attr-defined]
        self.num_envs = n
        probe = gym.make(env_id)
        self.single_observation_space, self.single_action_space = probe.observation_space, probe.action_space

    def reset(self, *, seed: int | None = None) -> tuple[Any, dict[str, Any]]:
        return np.stack(self.ray.get([a.reset.remote() for a in self.actors])), {}

    def step(self, actions: Any) -> tuple[Any, ...]:
        out = self.ray.get([a.step.remote(int(x)) for a, x in zip(self.actors, actions, strict=True)])
        obs = np.stack([o[0] for o in out])
        rew = np.array([o[1] for o in out], dtype=np.float32)
        term = np.array([o[2] for o in out])
        trunc = np.array([o[3] for o in out])
        infos: dict[str, Any] = {}
        done = term | trunc
        if done.any():
            infos["_final_obs"] = done
            infos["final_obs"] = [o[4] for o in out]
            infos["_episode"] = done
            infos["episode"] = {"r": np.array([o[5] or 0.0 for o in out])}
        return obs, rew, term, trunc, infos


def q_cfg(seed: int, actors: int, steps: int) -> TrainConfig:
    return TrainConfig(algo="dqn", num_envs=actors, num_workers=2, seed=seed, total_steps=steps,
                       target_return=None, dqn=DQNConfig(learning_starts=500))


def timed_loop(cfg: TrainConfig, env: Any) -> tuple[float, list[float]]:
    """Run the DQN training program on a started env (start-up is not timed for either side)."""
    t0 = time.perf_counter()
    r = train_on(env, cfg)
    return time.perf_counter() - t0, r.episode_returns


def reflow_q(seed: int, actors: int, steps: int) -> tuple[float, list[float]]:
    from gymnasium.vector import AutoresetMode

    from reflow.rl import make_vec

    cfg = q_cfg(seed, actors, steps)
    mode = AutoresetMode.SAME_STEP
    with make_vec(cfg.env_id, actors, num_workers=2, seed=seed, autoreset_mode=mode) as env:
        return timed_loop(cfg, env)


def ray_q(seed: int, actors: int, steps: int) -> tuple[float, list[float]]:
    cfg = q_cfg(seed, actors, steps)
    env = RayVec(cfg.env_id, actors, seed)
    env.reset(seed=seed)  # actor start-up is not timed
    result = timed_loop(cfg, env)
    for a in env.actors:
        env.ray.kill(a)
    return result


RLLIB_VENV = Path(".venv-rllib")


def ensure_rllib_venv() -> Path:
    """The RLlib venv's python, made on first use: ray[rllib] at the same Ray version, torch 2.13.0 CPU."""
    import ray

    python = RLLIB_VENV / "bin" / "python"
    if not python.exists():
        print(f"making {RLLIB_VENV} for RLlib (a few minutes, once)")
        subprocess.run([sys.executable, "-m", "venv", str(RLLIB_VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "-c", "constraints.txt",
                        f"ray[rllib]=={ray.__version__}", "torch==2.13.0"], check=True)
    return python


def rllib_ppo(seed: int, budget: int) -> float:
    """Seconds for RLlib PPO (same hyper-parameters) to reach 475, in a subprocess of its own venv."""
    script = Path(__file__).with_name("rllib_ppo.py")
    cmd = [str(ensure_rllib_venv()), str(script), "--seeds", str(seed), "--budget", str(budget)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return float(json.loads(out.strip().splitlines()[-1])["seconds"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="2 seeds, short Q-learning runs")
    ap.add_argument("--out", type=Path, default=Path("results/rl_training.json"))
    ap.add_argument("--no-rllib", action="store_true", help="skip the RLlib PPO column")
    args = ap.parse_args()
    seeds = [0, 1] if args.quick else [0, 1, 2, 3, 4]
    budget = 500_000
    rows: dict[str, Any] = {"ppo": [], "q": []}
    runners: list[tuple[str, Callable[[int, int], float]]] = [
        ("reflow", reflow_ppo(1)), ("reflow_w2", reflow_ppo(2)), ("sb3", sb3_ppo)]
    if not args.no_rllib:
        runners.append(("rllib", rllib_ppo))
    for seed in seeds:
        for name, fn in runners if seed % 2 == 0 else runners[::-1]:
            s = fn(seed, budget)
            rows["ppo"].append({"impl": name, "seed": seed, "seconds": s})
            print(f"ppo {name:6s} seed {seed}: {s:.2f} s to 475", flush=True)
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    actors, steps = 4, (2000 if args.quick else 8000)
    for rep in range(2 if args.quick else 3):
        order = [("reflow", reflow_q), ("ray", ray_q)]
        for qname, qfn in order if rep % 2 == 0 else order[::-1]:
            q_s, rets = qfn(rep, actors, steps)
            rows["q"].append({"impl": qname, "rep": rep, "seconds": q_s, "episodes": len(rets),
                              "returns_head": rets[:5]})
            print(f"sync Q-learning {qname:6s} rep {rep}: {q_s:.2f} s, {len(rets)} episodes")
    ray.shutdown()
    med = {f"ppo_{n}": statistics.median([r["seconds"] for r in rows["ppo"] if r["impl"] == n])
           for n, _ in runners}
    med.update({f"q_{n}": statistics.median([r["seconds"] for r in rows["q"] if r["impl"] == n])
                for n in ("reflow", "ray")})
    print("\n| benchmark | reflow median s | peer median s | reflow / peer |\n|---|---|---|---|")
    for ours in ("reflow", "reflow_w2"):
        for peer in ("sb3", "rllib"):
            if f"ppo_{peer}" in med:
                a, b = med[f"ppo_{ours}"], med[f"ppo_{peer}"]
                print(f"| PPO to 475, {ours} vs {peer} | {a:.2f} | {b:.2f} | {a / b:.3f} |")
    print(f"| sync Q-learning vs Ray | {med['q_reflow']:.2f} | {med['q_ray']:.2f} | "
          f"{med['q_reflow'] / med['q_ray']:.3f} |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"rows": rows, "medians": med, "quick": args.quick}, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
