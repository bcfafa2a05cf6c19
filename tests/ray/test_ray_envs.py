"""Env banks on Ray: the same trajectories as the local bank with slices on three nodes, a short PPO run
(``reflow train --ray ADDRESS``) bit-identical to the local one, a killed slice and a lost node named."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from gymnasium.vector import AutoresetMode

from reflow.cli import main as reflow
from reflow.errors import EnvError, NodeLost
from reflow.rl.envs import make_async, make_vec
from reflow.rl.envs.async_env import collect, step_each
from reflow.runtime.ray_cluster import LocalCluster, NodeInfo, nodes
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


def test_reflow_train_ray_by_address_is_bit_identical_to_the_local_run(ray_cluster: LocalCluster,
                                                                      tmp_path: Path) -> None:
    """``reflow train ... --ray ADDRESS`` as a user types it, in a fresh process that joins the cluster by
    its address: the checkpoint and the log equal those of the same command without ``--ray``."""
    args = ["train", "CartPole-v1", "--envs", "4", "--workers", "3", "--steps", "768", "--seed", "5",
            "--target-return", "none", "--keep-workers"]
    assert reflow([*args, "--out", str(tmp_path / "local")]) == 0
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    out = subprocess.run([sys.executable, "-m", "reflow.cli", *args, "--out", str(tmp_path / "ray"), "--ray",
                          ray_cluster.address], capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stderr
    logs = [json.loads((tmp_path / run / "log.json").read_text()) for run in ("local", "ray")]
    assert logs[0]["backend"] == "local" and logs[1]["backend"] == "ray"
    assert logs[0]["episode_returns"] and logs[0]["episode_returns"] == logs[1]["episode_returns"]
    assert logs[0]["curve"] == logs[1]["curve"] and logs[0]["steps"] == logs[1]["steps"]
    local, on_ray = (torch.load(tmp_path / run / "model.pt", weights_only=True)["state_dict"]
                     for run in ("local", "ray"))
    assert local.keys() == on_ray.keys() and all(torch.equal(local[k], on_ray[k]) for k in local)


@pytest.mark.timeout(180)
def test_a_lost_node_stops_the_bank_naming_slice_and_node(ray_cluster: LocalCluster) -> None:
    """A whole node (raylet, object store, the bank's processes on it) goes away between steps."""
    extra = ray_cluster.add_node()
    try:
        index = [n.node_id for n in nodes()].index(extra.node_id)
        env = make_vec("CartPole-v1", 8, num_workers=4, backend="ray", fit_workers=False)
        assert env.bank.placed[index].node_id == extra.node_id  # one slice per node, the new one included
        env.reset(seed=0)
        env.step(np.zeros(8, np.int64))
        leftovers = list(env.bank._leftovers)
        ray_cluster.remove_node(extra, wait=True)
        t0 = time.monotonic()
        with pytest.raises(NodeLost, match=rf"env slice {index} \(envs {2 * index}..{2 * index + 1} of "
                                           rf"'CartPole-v1'\) on node {extra.node_id[:8]}"):
            for _ in range(100):  # the loss shows at the next step
                env.step(np.zeros(8, np.int64))
        assert time.monotonic() - t0 < 120
        pids = [p for _, ps, _ in leftovers for p in ps]
        deadline = time.monotonic() + 10
        while any(process_alive(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not [p for p in pids if process_alive(p)]
        assert not [n for _, _, ns in leftovers for n in ns if os.path.exists(f"{SHM_DIR}/{n}")]
    finally:
        if extra in ray_cluster.worker_nodes:
            ray_cluster.remove_node(extra, wait=True)


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


def test_dict_and_tuple_spaces_on_three_nodes_match_sync_vector_env(ray_nodes: list[NodeInfo]) -> None:
    """A nested Dict-of-Tuple observation and a Dict action, each leaf gathered from the nodes into the
    driver's arrays: bit-equal to SyncVectorEnv, ``final_obs`` included."""
    import copy

    import gymnasium as gym
    from gymnasium import spaces
    from gymnasium.utils.env_checker import data_equivalence
    from gymnasium.vector import SyncVectorEnv
    from gymnasium.vector.utils import batch_space

    obs_space = spaces.Dict({"a": spaces.Tuple((spaces.Discrete(4), spaces.Box(-1, 1, (2,), np.float32))),
                             "b": spaces.MultiBinary(3)})
    act_space = spaces.Dict({"move": spaces.Discrete(3), "force": spaces.Box(-1, 1, (2,), np.float32)})

    class Tree(gym.Env[Any, Any]):  # defined here: it travels to the Ray workers by value
        def __init__(self) -> None:
            self.observation_space, self.action_space = obs_space, act_space
            self.t = 0

        def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> Any:
            super().reset(seed=seed)
            self.observation_space = copy.deepcopy(obs_space)  # its own generator, not shared by the envs
            self.observation_space.seed(int(self.np_random.integers(2**31)))
            self.t = 0
            return self.observation_space.sample(), {}

        def step(self, action: Any) -> Any:
            assert action in self.action_space
            self.t += 1
            reward = float(action["move"]) + float(action["force"].sum()) + float(self.np_random.normal())
            return self.observation_space.sample(), reward, self.t % 3 == 0, False, {"t": self.t}

    mode = AutoresetMode.SAME_STEP
    ref = SyncVectorEnv([Tree for _ in range(6)], autoreset_mode=mode)
    actions = batch_space(act_space, 6)
    actions.seed(0)
    with make_vec([Tree for _ in range(6)], num_workers=3, backend="ray", autoreset_mode=mode, seed=None,
                  fit_workers=False) as env:
        assert data_equivalence(env.reset(seed=5), ref.reset(seed=5), exact=True)
        for _ in range(8):
            a = actions.sample()
            assert data_equivalence(env.step(a), ref.step(a), exact=True)
    ref.close()
