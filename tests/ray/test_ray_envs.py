"""Env banks on Ray: the same trajectories as the local bank with slices on three nodes, a short PPO run
bit-identical to the local one, a lost slice named."""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np
import pytest
import torch
from gymnasium.vector import AutoresetMode

from reflow.errors import EnvError, NodeLost
from reflow.rl.algos.ppo import PPOConfig
from reflow.rl.envs import make_async, make_vec
from reflow.rl.envs.async_env import collect, step_each
from reflow.rl.train import TrainConfig, train
from reflow.runtime.ray_cluster import LocalCluster, NodeInfo
from reflow.transport.shm import SHM_DIR, process_alive

STEPS = 120


def rollout(env: Any, seed: int = 0) -> list[Any]:
    """Seeded random actions for ``STEPS`` steps: every observation, reward, flag and episode info."""
    rng = np.random.default_rng(seed)
    obs, _ = env.reset(seed=seed)
    out: list[Any] = [obs.copy()]
    for _ in range(STEPS):
        obs, rew, term, trunc, infos = env.step(rng.integers(0, 2, env.num_envs))
        final = infos.get("final_obs")
        out += [obs.copy(), rew, term, trunc, infos.get("episode", {}).get("r"),
                None if final is None else [x for x in final if x is not None]]
    return out


def same(a: list[Any], b: list[Any]) -> bool:
    def eq(x: Any, y: Any) -> bool:
        if isinstance(x, list):
            return isinstance(y, list) and len(x) == len(y) and all(map(eq, x, y))
        return bool(np.array_equal(x, y)) if x is not None else y is None
    return eq(a, b)


@pytest.mark.parametrize("mode", [AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP])
def test_vector_env_on_three_nodes_gives_the_local_trajectories(mode: AutoresetMode,
                                                               ray_nodes: list[NodeInfo]) -> None:
    with make_vec("CartPole-v1", 10, num_workers=2, autoreset_mode=mode, fit_workers=False) as env:
        local = rollout(env)
    with make_vec("CartPole-v1", 10, num_workers=5, autoreset_mode=mode, backend="ray",
                  fit_workers=False) as env:
        assert [n.node_id for n in env.bank.placed] == [n.node_id for n in ray_nodes]  # one unit per node
        assert env.bank.bounds == [0, 4, 8, 10]  # 5 slices of 2 envs: 2 + 2 + 1 per node
        on_ray = rollout(env)
        assert env.episode_count > 0
        assert env.get_attr("spec")[9].id == "CartPole-v1"
        env.set_attr("marker", list(range(10)))
        assert env.get_attr("marker") == tuple(range(10))
    assert same(local, on_ray)


def test_async_env_slices_are_actors_with_the_local_trajectories(ray_nodes: list[NodeInfo]) -> None:
    actions = np.random.default_rng(1).integers(0, 2, (40, 8))
    rewards = {}
    for backend in ("local", "ray"):
        with make_async("CartPole-v1", 8, num_workers=4, seed=3, backend=backend) as env:
            if backend == "ray":
                assert len({n.node_id for n in env.bank.placed}) == 3  # four slices over three nodes
            env.async_reset()
            collect(env)
            rewards[backend] = np.zeros((40, 8))
            step_each(env, actions, rewards[backend])
    assert np.array_equal(rewards["local"], rewards["ray"]) and rewards["ray"].sum() > 0


def test_short_ppo_run_on_ray_is_bit_identical_to_the_local_one(ray_cluster: LocalCluster) -> None:
    cfg = TrainConfig(num_envs=4, total_steps=4 * 64 * 2, target_return=None, seed=7, num_workers=2,
                      ppo=PPOConfig(epochs=2, minibatch_size=64))
    local = train(cfg)
    on_ray = train(TrainConfig(**{**cfg.__dict__, "backend": "ray"}))
    a, b = local.agent.state_dict(), on_ray.agent.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert local.episode_returns == on_ray.episode_returns and local.curve == on_ray.curve


@pytest.mark.timeout(120)
def test_a_killed_slice_is_named_and_leaves_nothing(ray_nodes: list[NodeInfo]) -> None:
    import ray

    env = make_vec("CartPole-v1", 6, num_workers=3, backend="ray", fit_workers=False)
    env.reset(seed=0)
    leftovers = list(env.bank._leftovers)
    ray.kill(env.bank._units[1])
    with pytest.raises(NodeLost, match=rf"env slice 1 \(envs 2..3 of 'CartPole-v1'\) on node "
                                       rf"{ray_nodes[1].node_id[:8]}"):
        env.step(np.zeros(6, np.int64))
    with pytest.raises(EnvError, match="closed"):
        env.step(np.zeros(6, np.int64))
    deadline = time.monotonic() + 10
    pids = [p for _, ps, _ in leftovers for p in ps]
    while any(process_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [p for p in pids if process_alive(p)]
    names = [n for _, _, ns in leftovers for n in ns]
    assert names and not [n for n in names if os.path.exists(f"{SHM_DIR}/{n}")]


def test_unknown_backend() -> None:
    with pytest.raises(EnvError, match="unknown env bank backend 'dask'"):
        make_vec("CartPole-v1", 2, backend="dask")
