"""Benchmark 3: training, reflow's agents (component graphs) against the usual libraries.

Part ``matched`` (the original claim): PPO wall time to reach CartPole-v1's 475 (mean of the last 20
episodes) over several seeds, reflow with envs in the calling process (``reflow``) and over 2 worker
processes (``reflow_w2``) vs Stable-Baselines3 PPO and RLlib PPO with the *same* hyper-parameters (16 envs,
64 steps per env per rollout, 8 epochs, minibatch 256, lr 1e-3, gamma 0.99, lambda 0.95, clip 0.2, 64x64
tanh MLPs), interleaved.

Part ``zoo``: time to threshold against Stable-Baselines3, each with the RL Zoo's tuned hyper-parameters
(reflow's presets, ``reflow.rl.config.PRESETS``, hold the same values): PPO and DQN on CartPole-v1 (475) and
Acrobot-v1 (-100), SAC on Pendulum-v1 (-200), PPO on InvertedPendulum-v5 (1000, the issue's target: each of
the last 20 episodes balanced for all 1000 steps; gymnasium registers 950).
PPO and SAC stop when the mean return of their last 20 *training* episodes reaches the target. DQN is judged
as the RL Zoo judges it, on greedy evaluations: every 5,000 env steps both sides play 10 greedy episodes
(reflow's ``eval_every``, SB3's ``EvalCallback`` + ``StopTrainingOnRewardThreshold``) and stop when their mean
reaches the target (with epsilon 0.04-0.1 still exploring, DQN's training episodes rarely average 475). Step
budgets are the RL Zoo's ``n_timesteps`` where it matters (DQN's and PPO CartPole's schedules depend on
it). Per task and library: env steps and wall seconds to the target per seed, the median, and the
interquartile mean with a stratified bootstrap 95% CI
(``reflow.wield.stats``); runs that miss the target within the budget count as the budget and are flagged.
``--part ppo10`` is the PPO CartPole-v1 row over 10 seeds (issue 19: median and spread of env steps to 475).

Part ``q``: synchronized parallel Q-learning: N env actors, one learner, synchronous updates (the DQN training
program of ``reflow.rl.train``, run with ``train_on`` on an open vector env). Only the env transport differs:
reflow's env bank over 2 worker processes vs one Ray actor per env. Same seeds, same number of steps,
interleaved repeats; ratio of medians.

RLlib runs from ``benchmarks/rllib_ppo.py`` in its own venv ``.venv-rllib`` made on first use (``ray[rllib]``
pins gymnasium 1.2, reflow runs on 1.4); its clock starts after ``build_algo()``. ``--no-rllib`` skips it.

Usage: flock -x /tmp/reflow-cpu.lock .venv/bin/python benchmarks/rl_training.py [--quick] [--part P ...]
       [--seeds N] [--tasks ppo-CartPole-v1 dqn-Acrobot-v1 ...] [--no-rllib]
       [--part zoo --impls reflow|sb3 --first-seed K --log zoo.jsonl]   # one run per piece of a lock
       --table zoo.jsonl ... [--tasks ...]                             # the zoo table of logged runs
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

from reflow.rl.algos import DQNConfig, PPOConfig
from reflow.rl.config import resolve
from reflow.rl.train import TrainConfig, train, train_on
from reflow.wield.stats import iqm, stratified_bootstrap

# The original matched comparison: one set of hyper-parameters given to every library.
MATCHED = PPOConfig(
    num_steps=64,
    epochs=8,
    minibatch_size=256,
    lr=1e-3,
    lr_schedule="constant",
    gamma=0.99,
    gae_lambda=0.95,
    clip=0.2,
    clip_schedule="constant",
)


def reflow_ppo(workers: int) -> Callable[[int, int], float]:
    """Seconds for reflow PPO with envs on ``workers`` processes to reach 475 (inf if not within budget)."""

    def timed(seed: int, budget: int) -> float:
        t0 = time.perf_counter()
        r = train(TrainConfig(seed=seed, total_steps=budget, num_workers=workers, num_envs=16, ppo=MATCHED))
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
    model = PPO(
        "MlpPolicy",
        env,
        n_steps=64,
        batch_size=256,
        n_epochs=8,
        learning_rate=1e-3,
        gamma=0.99,
        gae_lambda=0.95,
        clip_range=0.2,
        ent_coef=0.0,
        vf_coef=0.5,
        max_grad_norm=0.5,
        seed=seed,
        policy_kwargs={"net_arch": [64, 64], "activation_fn": torch.nn.Tanh},
        device="cpu",
    )
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
    return TrainConfig(
        algo="dqn",
        num_envs=actors,
        num_workers=2,
        seed=seed,
        total_steps=steps,
        target_return=None,
        dqn=DQNConfig(
            learning_starts=500,
            train_freq=4,
            gradient_steps=1,
            target_update=1000,
            hidden=(64, 64),
            lr=5e-4,
            batch_size=128,
            buffer_size=50_000,
        ),
    )


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
        subprocess.run(
            [
                str(python),
                "-m",
                "pip",
                "install",
                "-q",
                "-c",
                "constraints.txt",
                f"ray[rllib]=={ray.__version__}",
                "torch==2.13.0",
            ],
            check=True,
        )
    return python


def rllib_ppo(seed: int, budget: int) -> float:
    """Seconds for RLlib PPO (same hyper-parameters) to reach 475, in a subprocess of its own venv."""
    script = Path(__file__).with_name("rllib_ppo.py")
    cmd = [str(ensure_rllib_venv()), str(script), "--seeds", str(seed), "--budget", str(budget)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return float(json.loads(out.strip().splitlines()[-1])["seconds"])


# --- part zoo: RL Zoo hyper-parameters on both sides --------------------------------------------------------
TASKS: dict[str, tuple[str, str, float, int]] = {  # name: (algo, env, target, step budget)
    "ppo-CartPole-v1": ("ppo", "CartPole-v1", 475.0, 100_000),
    "ppo-Acrobot-v1": ("ppo", "Acrobot-v1", -100.0, 300_000),
    "dqn-CartPole-v1": ("dqn", "CartPole-v1", 475.0, 50_000),
    "dqn-Acrobot-v1": ("dqn", "Acrobot-v1", -100.0, 100_000),
    "sac-Pendulum-v1": ("sac", "Pendulum-v1", -200.0, 20_000),
    "ppo-InvertedPendulum-v5": ("ppo", "InvertedPendulum-v5", 1000.0, 300_000),
}


EVAL_EVERY = 5000  # env steps between DQN's greedy evaluations (10 episodes each), both sides


def _lin(start: float) -> Callable[[float], float]:
    return lambda remaining: remaining * start


def sb3_zoo(algo: str, env_id: str, seed: int) -> tuple[Any, Any]:
    """Stable-Baselines3 with the RL Zoo's hyper-parameters for (algo, env): (model, env)."""
    from stable_baselines3 import DQN, PPO, SAC
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize

    big = {"net_arch": [256, 256]}
    if algo == "ppo" and env_id == "CartPole-v1":
        env = make_vec_env(env_id, n_envs=8, seed=seed)
        return PPO(
            "MlpPolicy",
            env,
            n_steps=32,
            batch_size=256,
            gae_lambda=0.8,
            gamma=0.98,
            n_epochs=20,
            ent_coef=0.0,
            learning_rate=_lin(1e-3),
            clip_range=_lin(0.2),
            seed=seed,
            device="cpu",
        ), env
    if algo == "ppo" and env_id == "Acrobot-v1":
        env = VecNormalize(make_vec_env(env_id, n_envs=16, seed=seed), gamma=0.99)
        return PPO(
            "MlpPolicy",
            env,
            n_steps=256,
            gae_lambda=0.94,
            gamma=0.99,
            n_epochs=4,
            ent_coef=0.0,
            seed=seed,
            device="cpu",
        ), env
    if algo == "ppo" and env_id == "InvertedPendulum-v5":
        env = VecNormalize(make_vec_env(env_id, n_envs=1, seed=seed), gamma=0.999)
        return PPO(
            "MlpPolicy",
            env,
            batch_size=64,
            n_steps=32,
            gamma=0.999,
            learning_rate=0.000222425,
            ent_coef=1.37976e-07,
            clip_range=0.4,
            n_epochs=5,
            gae_lambda=0.9,
            max_grad_norm=0.3,
            vf_coef=0.19816,
            seed=seed,
            device="cpu",
        ), env
    if algo == "dqn" and env_id == "CartPole-v1":
        env = make_vec_env(env_id, n_envs=1, seed=seed)
        return DQN(
            "MlpPolicy",
            env,
            learning_rate=2.3e-3,
            batch_size=64,
            buffer_size=100_000,
            learning_starts=1000,
            gamma=0.99,
            target_update_interval=10,
            train_freq=256,
            gradient_steps=128,
            exploration_fraction=0.16,
            exploration_final_eps=0.04,
            policy_kwargs=big,
            seed=seed,
            device="cpu",
        ), env
    if algo == "dqn" and env_id == "Acrobot-v1":
        env = make_vec_env(env_id, n_envs=1, seed=seed)
        return DQN(
            "MlpPolicy",
            env,
            learning_rate=6.3e-4,
            batch_size=128,
            buffer_size=50_000,
            learning_starts=0,
            gamma=0.99,
            target_update_interval=250,
            train_freq=4,
            gradient_steps=-1,
            exploration_fraction=0.12,
            exploration_final_eps=0.1,
            policy_kwargs=big,
            seed=seed,
            device="cpu",
        ), env
    if algo == "sac" and env_id == "Pendulum-v1":
        env = make_vec_env(env_id, n_envs=1, seed=seed)
        return SAC("MlpPolicy", env, learning_rate=1e-3, seed=seed, device="cpu"), env
    raise ValueError(f"no RL Zoo setting here for {algo} on {env_id}")


def sb3_to_target(algo: str, env_id: str, target: float, seed: int, budget: int) -> tuple[float, int]:
    """(wall seconds, env steps) until SB3's last 20 training episodes average ``target`` (inf if never)."""
    from stable_baselines3.common.callbacks import BaseCallback

    class Stop(BaseCallback):
        def __init__(self) -> None:
            super().__init__()
            self.returns: list[float] = []
            self.reached = False

        def _on_step(self) -> bool:
            for info in self.locals["infos"]:
                if "episode" in info:
                    self.returns.append(float(info["episode"]["r"]))
            self.reached = len(self.returns) >= 20 and float(np.mean(self.returns[-20:])) >= target
            return not self.reached

    torch.set_num_threads(1)
    t0 = time.perf_counter()
    model, env = sb3_zoo(algo, env_id, seed)
    if algo == "dqn":  # judged on greedy evaluations, as reflow's DQN (EVAL_EVERY)
        from stable_baselines3.common.callbacks import EvalCallback, StopTrainingOnRewardThreshold
        from stable_baselines3.common.env_util import make_vec_env

        stop = StopTrainingOnRewardThreshold(reward_threshold=target)
        evals = make_vec_env(env_id, n_envs=1, seed=seed + 10_000)
        cb: Any = EvalCallback(
            evals, callback_on_new_best=stop, n_eval_episodes=10, eval_freq=EVAL_EVERY, verbose=0
        )
        model.learn(total_timesteps=budget, callback=cb)
        evals.close()
        reached = cb.best_mean_reward >= target
    else:
        cb = Stop()
        model.learn(total_timesteps=budget, callback=cb)
        reached = cb.reached
    env.close()
    seconds = time.perf_counter() - t0
    return (seconds, int(model.num_timesteps)) if reached else (float("inf"), budget)


def reflow_to_target(algo: str, env_id: str, target: float, seed: int, budget: int) -> tuple[float, int]:
    """(wall seconds, env steps) until reflow's last 20 training episodes average ``target``."""
    from dataclasses import replace

    t0 = time.perf_counter()
    every = EVAL_EVERY if algo == "dqn" else 0
    cfg = replace(
        resolve(env_id, algo),
        seed=seed,
        total_steps=budget,
        target_return=target,
        eval_every=every,
        eval_episodes=10,
    )
    r = train(cfg)
    seconds = time.perf_counter() - t0
    return (seconds, r.steps) if r.reached_target else (float("inf"), budget)


def summary(values: list[float], budget: float, fmt: str = ",.0f") -> str:
    """Median and IQM [95% CI] over seeds (two table cells), misses counted as the budget."""
    x = np.array([v if np.isfinite(v) else budget for v in values])
    est = stratified_bootstrap(x, iqm, reps=1000)
    miss = sum(not np.isfinite(v) for v in values)
    return f"{np.median(x):{fmt}} | {est.value:{fmt}} [{est.low:{fmt}}, {est.high:{fmt}}]" + (
        f" ({miss} missed)" if miss else ""
    )


def run_zoo(
    tasks: list[str],
    seeds: list[int],
    rows: list[dict[str, Any]],
    log: Path | None = None,
    impls: tuple[str, ...] = ("reflow", "sb3"),
) -> None:
    """Each task's seeds in turn, reflow and SB3 alternating which goes first; each row is appended to
    ``log`` (JSON lines) as soon as it is measured, so a run cut short keeps what it finished. ``impls``
    picks the libraries (one run per invocation keeps each piece of a shared CPU lock short)."""
    for task in tasks:
        algo, env_id, target, budget = TASKS[task]
        for seed in seeds:
            both = (("reflow", reflow_to_target), ("sb3", sb3_to_target))
            runners = [(name, fn) for name, fn in both if name in impls]
            for impl, fn in runners if seed % 2 == 0 else runners[::-1]:
                c0 = time.process_time()  # CPU of this process: both sides step their envs here
                sec, steps = fn(algo, env_id, target, seed, budget)
                cpu = time.process_time() - c0 if np.isfinite(sec) else float("inf")
                row = {"task": task, "impl": impl, "seed": seed, "seconds": sec, "cpu": cpu, "steps": steps}
                rows.append(row)
                if log is not None:
                    with log.open("a") as f:
                        f.write(json.dumps(row) + "\n")
                print(f"{task} {impl} seed {seed}: {steps} steps, {sec:.1f} s, {cpu:.1f} s CPU", flush=True)
    zoo_table(rows)


def zoo_table(rows: list[dict[str, Any]]) -> None:
    """The Markdown table of env steps, wall seconds and CPU seconds (rows that have them) to target, per
    task and library."""
    print("\n| task | library | seeds | env steps: median | IQM [95% CI] | seconds: median | IQM [95% CI] | "
          "CPU s: median | IQM [95% CI] |")
    print("|---|---|---:|---:|---|---:|---|---:|---|")
    for task in dict.fromkeys(r["task"] for r in rows):
        budget = TASKS[task][3]
        for impl in ("reflow", "sb3"):
            mine = [r for r in rows if r["task"] == task and r["impl"] == impl]
            if not mine:
                continue
            steps = [float(r["steps"]) if np.isfinite(r["seconds"]) else float("inf") for r in mine]
            secs = [r["seconds"] for r in mine]
            worst = max([s for s in secs if np.isfinite(s)], default=0.0) * 2 or 1.0
            cells = f"{summary(steps, budget)} | {summary(secs, worst, '.0f')}"
            cpus = [r["cpu"] for r in mine if "cpu" in r]
            worst_cpu = max([s for s in cpus if np.isfinite(s)], default=0.0) * 2 or 1.0
            cells += f" | {summary(cpus, worst_cpu, '.0f')}" if len(cpus) == len(mine) else " | - | -"
            print(f"| {task} | {impl} | {len(mine)} | {cells} |")
    print("(misses count as the step budget, and as twice the slowest finished run for seconds)")


def run_matched(seeds: list[int], rllib: bool, rows: list[dict[str, Any]]) -> dict[str, float]:
    budget = 500_000
    runners: list[tuple[str, Callable[[int, int], float]]] = [
        ("reflow", reflow_ppo(1)),
        ("reflow_w2", reflow_ppo(2)),
        ("sb3", sb3_ppo),
    ]
    if rllib:
        runners.append(("rllib", rllib_ppo))
    for seed in seeds:
        for name, fn in runners if seed % 2 == 0 else runners[::-1]:
            s = fn(seed, budget)
            rows.append({"impl": name, "seed": seed, "seconds": s})
            print(f"ppo {name:6s} seed {seed}: {s:.2f} s to 475", flush=True)
    med = {f"ppo_{n}": statistics.median([r["seconds"] for r in rows if r["impl"] == n]) for n, _ in runners}
    print("\n| benchmark | reflow median s | peer median s | reflow / peer |\n|---|---|---|---|")
    for ours in ("reflow", "reflow_w2"):
        for peer in ("sb3", "rllib"):
            if f"ppo_{peer}" in med:
                a, b = med[f"ppo_{ours}"], med[f"ppo_{peer}"]
                print(f"| PPO to 475 (matched), {ours} vs {peer} | {a:.2f} | {b:.2f} | {a / b:.3f} |")
    return med


def run_q(quick: bool, rows: list[dict[str, Any]]) -> dict[str, float]:
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, object_store_memory=300 * 2**20)
    actors, steps = 4, (2000 if quick else 8000)
    for rep in range(2 if quick else 3):
        order = [("reflow", reflow_q), ("ray", ray_q)]
        for qname, qfn in order if rep % 2 == 0 else order[::-1]:
            q_s, rets = qfn(rep, actors, steps)
            rows.append(
                {"impl": qname, "rep": rep, "seconds": q_s, "episodes": len(rets), "returns_head": rets[:5]}
            )
            print(f"sync Q-learning {qname:6s} rep {rep}: {q_s:.2f} s, {len(rets)} episodes")
    ray.shutdown()
    med = {
        f"q_{n}": statistics.median([r["seconds"] for r in rows if r["impl"] == n]) for n in ("reflow", "ray")
    }
    print(
        f"| sync Q-learning vs Ray | {med['q_reflow']:.2f} | {med['q_ray']:.2f} | "
        f"{med['q_reflow'] / med['q_ray']:.3f} |"
    )
    return med


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--quick", action="store_true", help="2 seeds, PPO CartPole only in the zoo part, short Q runs"
    )
    ap.add_argument(
        "--part", nargs="+", choices=("matched", "zoo", "ppo10", "q"), default=["matched", "zoo", "q"]
    )
    ap.add_argument("--tasks", nargs="+", choices=list(TASKS), default=None, help="zoo tasks (default: all)")
    ap.add_argument("--seeds", type=int, default=None, help="seeds per task (default 5; ppo10: 10)")
    ap.add_argument("--first-seed", type=int, default=0, help="zoo seeds are first-seed .. first-seed+N-1")
    ap.add_argument("--log", type=Path, default=None, help="zoo: append each run as a JSON line here")
    ap.add_argument(
        "--impls", nargs="+", choices=("reflow", "sb3"), default=["reflow", "sb3"], help="zoo: libraries"
    )
    ap.add_argument("--table", type=Path, nargs="+", default=None, help="print the table of these zoo logs")
    ap.add_argument("--out", type=Path, default=Path("results/rl_training.json"))
    ap.add_argument("--no-rllib", action="store_true", help="skip the RLlib PPO column")
    args = ap.parse_args()
    n = args.seeds or (2 if args.quick else 5)
    if args.table:
        lines = [line for p in args.table for line in p.read_text().splitlines() if line.strip()]
        zoo_table([r for r in map(json.loads, lines) if args.tasks is None or r["task"] in args.tasks])
        return
    rows: dict[str, Any] = {"matched": [], "zoo": [], "q": []}
    med: dict[str, float] = {}
    if "matched" in args.part:
        med.update(run_matched(list(range(n)), not args.no_rllib, rows["matched"]))
    if "zoo" in args.part:
        tasks = args.tasks or (["ppo-CartPole-v1"] if args.quick else list(TASKS))
        seeds = list(range(args.first_seed, args.first_seed + n))
        run_zoo(tasks, seeds, rows["zoo"], args.log, tuple(args.impls))
    if "ppo10" in args.part:
        run_zoo(["ppo-CartPole-v1"], list(range(args.seeds or 10)), rows["zoo"])
        for impl in ("reflow", "sb3"):
            steps = sorted(
                r["steps"] for r in rows["zoo"] if r["impl"] == impl and r["task"] == "ppo-CartPole-v1"
            )
            q1, q3 = np.percentile(steps, [25, 75])
            print(
                f"PPO CartPole-v1 {impl}: env steps to 475 over {len(steps)} seeds: median "
                f"{np.median(steps):.0f}, range {steps[0]}-{steps[-1]}, IQR {q1:.0f}-{q3:.0f}"
            )
    if "q" in args.part:
        med.update(run_q(args.quick, rows["q"]))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {"rows": rows, "medians": med, "quick": args.quick, "parts": args.part}, indent=1, default=str
        )
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
