"""RLlib PPO on CartPole-v1 with reflow's PPO hyper-parameters: the RLlib column of ``rl_training.py``.

RLlib needs gymnasium 1.2 (``ray[rllib]`` pins it) while reflow runs on 1.4, so this script runs in its own
venv, made on first use by ``rl_training.py --rllib`` (``.venv-rllib``: ray[rllib] and torch==2.13.0). It
prints one JSON line per seed: wall seconds until the mean return of the last 20 episodes reaches 475 (inf if
it does not within the step budget), env steps used, and whether it got there.

Usage: .venv-rllib/bin/python benchmarks/rllib_ppo.py --seeds 0 1 2 3 4 [--budget 300000]
"""

from __future__ import annotations

import argparse
import json
import time

TARGET = 475.0


def run(seed: int, budget: int) -> dict[str, float | int | bool]:
    """One seed: 16 envs on one env runner (2 cores), 64 steps per env per rollout, 8 epochs of 256."""
    from ray.rllib.algorithms.ppo import PPOConfig
    from ray.rllib.core.rl_module.default_model_config import DefaultModelConfig

    config = (
        PPOConfig()
        .environment("CartPole-v1")
        .env_runners(num_env_runners=1, num_envs_per_env_runner=16, rollout_fragment_length=64,
                     num_cpus_per_env_runner=1)
        .learners(num_learners=0)
        .training(lr=1e-3, gamma=0.99, lambda_=0.95, clip_param=0.2, entropy_coeff=0.0, use_kl_loss=False,
                  vf_loss_coeff=0.5, vf_clip_param=float("inf"), grad_clip=0.5, num_epochs=8,
                  minibatch_size=256, train_batch_size_per_learner=1024)
        .rl_module(model_config=DefaultModelConfig(fcnet_hiddens=[64, 64], fcnet_activation="tanh",
                                                   vf_share_layers=False))
        .reporting(metrics_num_episodes_for_smoothing=20)
        .debugging(seed=seed)
    )
    algo = config.build_algo()
    t0 = time.perf_counter()
    steps, reached = 0, False
    try:
        while steps < budget:
            result = algo.train()
            steps = int(result["env_runners"]["num_env_steps_sampled_lifetime"])
            ret = result["env_runners"].get("episode_return_mean")
            if ret is not None and ret >= TARGET:
                reached = True
                break
    finally:
        seconds = time.perf_counter() - t0
        algo.stop()
    return {"seed": seed, "seconds": seconds if reached else float("inf"), "steps": steps, "reached": reached}


def main() -> None:
    import ray
    import torch

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--budget", type=int, default=300_000, help="env steps per seed")
    args = ap.parse_args()
    torch.set_num_threads(1)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        for seed in args.seeds:
            print(json.dumps(run(seed, args.budget)), flush=True)
    finally:
        ray.shutdown()


if __name__ == "__main__":
    main()
