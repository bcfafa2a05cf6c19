"""Batched inference, multi-agent groups, the swarm env, and the policy reactor in a rollout loop."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from pettingzoo.test import parallel_api_test

from reflow.errors import EnvError
from reflow.reactor import run
from reflow.rl import make_vec
from reflow.rl.envs.inference import BatchedPolicy, MultiAgentInference
from reflow.rl.envs.reactors import Rollout
from reflow.rl.envs.swarm import SwarmEnv


def mlp(seed: int, n_in: int = 4, n_out: int = 2) -> torch.nn.Module:
    torch.manual_seed(seed)  # only to make the weights; inference itself uses no global state
    return torch.nn.Sequential(torch.nn.Linear(n_in, 32), torch.nn.Tanh(), torch.nn.Linear(32, n_out))


class CountingPolicy(BatchedPolicy):
    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__(model)
        self.calls = 0

    def __call__(self, obs: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        self.calls += 1
        return super().__call__(obs)


def test_batched_forward_equals_one_forward_per_observation() -> None:
    model = mlp(0)
    obs = np.random.default_rng(0).standard_normal((64, 4)).astype(np.float32)
    batched = BatchedPolicy(model)(obs)
    with torch.no_grad():
        single = [int(model(torch.from_numpy(o[None]))[0].argmax()) for o in obs]
    assert batched.tolist() == single


def test_sampled_actions_depend_only_on_the_seed() -> None:
    obs = np.zeros((200, 4), np.float32)
    a = BatchedPolicy(mlp(1), sample=True, seed=5)(obs)
    torch.manual_seed(123)  # global torch state must not matter
    b = BatchedPolicy(mlp(1), sample=True, seed=5)(obs)
    c = BatchedPolicy(mlp(1), sample=True, seed=6)(obs)
    assert a.tolist() == b.tolist() != c.tolist()
    assert set(a.tolist()) == {0, 1}


def test_act_into_writes_the_bank_action_array() -> None:
    with make_vec("CartPole-v1", 8, num_workers=2, fit_workers=False) as env:
        env.reset()
        policy = BatchedPolicy(mlp(2))
        obs = env.bank.obs
        actions = env.bank.arrays["actions"]
        policy.act_into(obs, actions)
        assert actions.tolist() == policy(obs.copy()).tolist()


def test_swarm_env_follows_the_parallel_api() -> None:
    parallel_api_test(SwarmEnv(3, 2, max_steps=20), num_cycles=60)
    a, _ = SwarmEnv(2, 2).reset(seed=4)
    b, _ = SwarmEnv(2, 2).reset(seed=4)
    assert all(np.array_equal(a[k], b[k]) for k in a)


def test_multi_agent_groups_are_batched_once_each() -> None:
    env = SwarmEnv(num_chasers=5, num_runners=3)
    chase, flee = CountingPolicy(mlp(3, 6, 5)), CountingPolicy(mlp(4, 6, 5))
    infer = MultiAgentInference({"chaser": chase, "runner": flee}, group_of=lambda a: a.split("_")[0])
    obs, _ = env.reset(seed=0)
    actions = infer.act(obs)
    assert chase.calls == flee.calls == 1
    assert set(actions) == set(env.possible_agents)
    for agent, action in actions.items():
        policy = chase if agent.startswith("chaser") else flee
        with torch.no_grad():
            assert action == int(policy.model(torch.from_numpy(obs[agent][None]))[0].argmax())
    env.step(actions)
    with pytest.raises(EnvError, match="group 'runner', which has no policy"):
        MultiAgentInference({"chaser": chase}, group_of=lambda a: a.split("_")[0]).act(obs)


def rollout(num_workers: int) -> dict[str, Any]:
    with make_vec("CartPole-v1", 6, num_workers=num_workers, fit_workers=False, seed=9) as env:
        program = Rollout(env, BatchedPolicy(mlp(5), sample=True, seed=1), steps=60)
        run(program)
        return program.summary()


def test_policy_reactor_rollout_is_deterministic(no_leaks: None) -> None:
    base = rollout(1)
    assert base["steps"] == 60 and base["episode_returns"]
    assert rollout(2) == base
