"""Run an agent over K seeds and several envs, in parallel worker processes, into the experiment store.

A suite is a small TOML (or YAML) file::

    name = "ppo-zoo"                 # the experiment's name in the store
    algo = "ppo"
    envs = ["CartPole-v1", "Acrobot-v1"]
    seeds = 5                        # seeds 0..4, or a list
    num_envs = 4                     # optional: envs per run (default: the preset's)
    steps = 50000                    # env-step budget per run
    target = false                   # stop at the env's reward threshold? (default: run the whole budget)
    [ppo]                            # hyper-parameters over the presets, as for `reflow train --config`
    lr = 0.001

Each (env, seed) is one job: ``reflow.rl.train.train`` with the resolved config, run in a worker process
(``spawn``; ``workers`` at a time, each job bit-identical to a run on its own). A run's score is the mean
return of its last 20 training episodes (``score = "final"``) or of 10 greedy episodes of the trained
policy (``score = "greedy"``).
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from reflow.errors import WieldError
from reflow.wield.store import Store, code_revision

SCORES = ("final", "greedy")


@dataclass(frozen=True)
class Suite:
    name: str
    algo: str
    envs: tuple[str, ...]
    seeds: tuple[int, ...]
    steps: int
    target: bool = False
    score: str = "final"
    num_envs: int | None = None
    hparams: dict[str, Any] = field(default_factory=dict)


def load_suite(path: Path) -> Suite:
    """Read a suite file; WieldError naming the file and the key for anything wrong."""
    from reflow.errors import ReflowError
    from reflow.rl.config import read_config_file

    try:
        data = read_config_file(path)
    except ReflowError as e:
        raise WieldError(str(e)) from e
    missing = [k for k in ("name", "algo", "envs", "steps") if k not in data]
    if missing:
        raise WieldError(f"suite {path} lacks {missing}; see `reflow wield run --help`")
    seeds = data.get("seeds", 5)
    algo = str(data["algo"])
    known = {"name", "algo", "envs", "seeds", "steps", "target", "score", "num_envs", algo}
    unknown = sorted(set(data) - known)
    if unknown:
        raise WieldError(f"suite {path}: unknown key(s) {unknown}; known: {sorted(known)}")
    score = str(data.get("score", "final"))
    if score not in SCORES:
        raise WieldError(f"suite {path}: score must be one of {SCORES}, got {score!r}")
    return Suite(
        str(data["name"]),
        algo,
        tuple(data["envs"]),
        tuple(range(int(seeds))) if isinstance(seeds, int) else tuple(int(s) for s in seeds),
        int(data["steps"]),
        bool(data.get("target", False)),
        score,
        int(data["num_envs"]) if "num_envs" in data else None,
        dict(data.get(algo, {})),
    )


def run_one(suite: Suite, env_id: str, seed: int) -> dict[str, Any]:
    """One job: train, score, and return what the store keeps (runs in a worker process)."""
    from reflow.rl.config import resolve
    from reflow.rl.evaluate import evaluate_agent
    from reflow.rl.train import train

    cfg = resolve(
        env_id, suite.algo, None, {"seed": seed, "total_steps": suite.steps, suite.algo: suite.hparams}
    )
    if not suite.target:
        cfg = replace(cfg, target_return=None)
    if suite.num_envs is not None:
        cfg = replace(cfg, num_envs=suite.num_envs)
    result = train(cfg)
    if not result.episode_returns:
        raise WieldError(f"suite {suite.name!r}: the run on {env_id} (seed {seed}) finished no episode in "
                         f"{result.steps} env steps; give the suite more steps")
    if suite.score == "greedy":
        from reflow.rl.algos import make_agent

        policy = make_agent(
            cfg.algo, result.agent.obs_spec, result.agent.action_spec, cfg.hparams, 1, seed, False
        )
        policy.load_policy_state(result.agent.policy_state())
        score = float(np.mean(evaluate_agent(policy, env_id, 10, seed=10_000 + seed)))
    else:
        score = float(np.mean(result.episode_returns[-20:]))
    config = {k: v for k, v in asdict(cfg).items() if k not in ("ppo", "dqn", "sac")}
    config[cfg.algo] = asdict(cfg.hparams)
    return {
        "env_id": env_id,
        "seed": seed,
        "config": config,
        "score": score,
        "steps": result.steps,
        "seconds": result.seconds,
        "reached_target": result.reached_target,
        "curve": result.curve,
    }


def run_suite(suite: Suite, store: Store, workers: int = 1, progress: bool = True) -> list[int]:
    """Run every (env, seed) of ``suite`` on ``workers`` processes; store each run; return their ids."""
    from tqdm import tqdm

    if workers < 1:
        raise WieldError(f"workers must be >= 1, got {workers}")
    jobs = [(env, seed) for env in suite.envs for seed in suite.seeds]
    revision = code_revision()
    ids: list[int] = []

    def store_run(r: dict[str, Any]) -> None:
        ids.append(store.add(suite.name, suite.algo, r["env_id"], r["seed"], r["config"], r["score"],
                             r["steps"], r["seconds"], r["reached_target"], r["curve"], revision))

    if workers == 1:  # in this process: nothing to gain from a pool
        for env, seed in tqdm(jobs, desc=f"wield {suite.name}", unit="run", disable=not progress):
            store_run(run_one(suite, env, seed))
        return ids
    with (
        worker_pool(workers) as pool,
        tqdm(total=len(jobs), desc=f"wield {suite.name}", unit="run", disable=not progress) as bar,
    ):
        futures = [pool.submit(run_one, suite, env, seed) for env, seed in jobs]
        for fut in futures:  # in job order, so the store's ids do not depend on timing
            store_run(fut.result())
            bar.update(1)
    return ids


def worker_pool(workers: int) -> ProcessPoolExecutor:
    """A pool of ``spawn``ed workers that die with the process that made it: a pool's workers wait for work
    forever, so a suite killed mid-run (SIGKILL, the OOM killer) would otherwise leave them behind."""
    return ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_die_with, initargs=(os.getpid(),))


def _die_with(parent: int) -> None:
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # it died before the line above ran
        os._exit(1)
