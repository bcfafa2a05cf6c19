"""Claim (Wield's systems use): an RL agent can learn to place dataflow graphs on P workers; how close does
it come to reflow's own critical-path clustering + merge?

PPO (a component graph, ``reflow train``'s agent) is trained on ``reflow/GraphPlacement-v0``: random
30-node DAGs mixed with the graphs of three ONNX light models (squeezenet, bvlc_alexnet, zfnet512, FLOP
costs). Its greedy placements are then compared, on held-out graphs (random DAGs from unseen seeds, and the
unseen ONNX models inception_v1 and shufflenet), with reflow's passes (linear clustering + greedy merge, the
baseline), earliest-finish-time list scheduling (each node where it can start first) and random placement.
The table gives makespan / baseline (lower is better, 1 = as good as reflow's passes), median over graphs.

    flock -x /tmp/reflow-cpu.lock .venv/bin/python benchmarks/wield_placement.py [--quick] [--steps N]

Writes results/wield_placement.json.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from reflow.components.agent import obs_tensor
from reflow.rl.algos import PPOConfig
from reflow.rl.train import TrainConfig, train_on
from reflow.wield.placement import GraphPlacementEnv, onnx_graphs

ENV_ID = "reflow.wield.placement:reflow/GraphPlacement-v0"
TRAIN_ONNX = ("squeezenet", "bvlc_alexnet", "zfnet512")
HELD_OUT_ONNX = ("inception_v1", "shufflenet")
WORKERS = 4


def play(env: GraphPlacementEnv, seed: int, choose: Any) -> float:
    """makespan / baseline of one episode placed by ``choose(env, obs) -> worker``."""
    obs, _ = env.reset(seed=seed)
    done, info = False, {}
    while not done:
        obs, _, done, _, info = env.step(choose(env, obs))
    return float(info["makespan"] / info["baseline"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="a short training run (make bench)")
    ap.add_argument(
        "--steps", type=int, default=None, help="training env steps (default 100000; quick 10000)"
    )
    args = ap.parse_args()
    from gymnasium.vector import AutoresetMode

    from reflow.rl import make_vec

    steps = args.steps or (10_000 if args.quick else 100_000)
    cfg = TrainConfig(
        env_id=ENV_ID,
        algo="ppo",
        num_envs=8,
        total_steps=steps,
        target_return=None,
        seed=0,
        ppo=PPOConfig(
            num_steps=64,
            epochs=4,
            minibatch_size=128,
            lr=3e-4,
            gamma=1.0,
            gae_lambda=0.95,
            ent_coef=0.01,
            normalize_obs=True,
            hidden=(64, 64),
        ),
    )
    t0 = time.perf_counter()
    with make_vec(
        ENV_ID,
        cfg.num_envs,
        num_workers=2,
        seed=0,
        autoreset_mode=AutoresetMode.SAME_STEP,
        env_kwargs={"workers": WORKERS, "nodes": 30, "onnx": TRAIN_ONNX, "onnx_share": 0.3},
    ) as env:
        result = train_on(env, cfg)
    train_s = time.perf_counter() - t0
    from reflow.rl.algos import make_agent

    agent = make_agent("ppo", result.agent.obs_spec, result.agent.action_spec, cfg.ppo, 1, 0, False)
    agent.load_policy_state(result.agent.policy_state())
    gen = torch.Generator()

    def rl(env: GraphPlacementEnv, obs: np.ndarray) -> int:
        return int(agent.act(obs_tensor(obs[None], agent.obs_spec), gen, explore=False).env_actions[0])

    def eft(env: GraphPlacementEnv, obs: np.ndarray) -> int:
        return int(np.argmin(env._starts(env.order[env.t])))

    rng = np.random.default_rng(0)

    def rand(env: GraphPlacementEnv, obs: np.ndarray) -> int:
        return int(rng.integers(env.workers))

    sets = {
        "random DAGs (held-out seeds)": (
            GraphPlacementEnv(WORKERS, 30),
            list(range(10_000, 10_000 + (8 if args.quick else 30))),
        ),
        "ONNX held-out (inception_v1, shufflenet)": (
            GraphPlacementEnv(WORKERS, graphs=onnx_graphs(HELD_OUT_ONNX)),
            [0, 1, 2, 3],
        ),
        "ONNX seen in training": (
            GraphPlacementEnv(WORKERS, graphs=onnx_graphs(TRAIN_ONNX)),
            [0, 1, 2, 3, 4, 5],
        ),
    }
    table: dict[str, dict[str, float]] = {}
    for name, (env, seeds) in sets.items():
        table[name] = {
            who: float(np.median([play(env, s, fn) for s in seeds]))
            for who, fn in (("PPO agent", rl), ("EFT list scheduling", eft), ("random", rand))
        }
    curve = result.curve
    print(
        f"trained PPO for {steps} env steps in {train_s:.0f} s; return (-makespan / critical path): "
        f"first {curve[0][1]:.3f}, last {curve[-1][1]:.3f}"
    )
    print("\nmakespan / reflow's critical-path clustering + merge (median over graphs; lower is better)")
    print(f"{'graphs':44} {'PPO agent':>10} {'EFT':>8} {'random':>8}")
    for name, row in table.items():
        print(f"{name:44} {row['PPO agent']:10.3f} {row['EFT list scheduling']:8.3f} {row['random']:8.3f}")
    out = Path("results/wield_placement.json")
    out.parent.mkdir(exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "steps": steps,
                "train_seconds": train_s,
                "table": table,
                "curve": curve,
                "config": str(replace(cfg, ppo=cfg.ppo)),
            },
            indent=1,
        )
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
