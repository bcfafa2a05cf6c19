"""Checkpoint round trip for every algorithm, and clear errors for missing, corrupt and mismatched files."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import pytest
import torch

from reflow.components import from_space
from reflow.errors import CheckpointError
from reflow.rl.algos import AGENTS, make_agent
from reflow.rl.checkpoint import load_checkpoint, save_checkpoint

ENVS = {"ppo": "Pendulum-v1", "dqn": "CartPole-v1", "sac": "Pendulum-v1"}


@pytest.mark.parametrize("algo", list(AGENTS))
def test_round_trip_acts_the_same(tmp_path: Path, algo: str) -> None:
    env = gym.make(ENVS[algo])
    obs, act = from_space(env.observation_space), from_space(env.action_space)
    agent = make_agent(algo, obs, act, AGENTS[algo][1](), 4, seed=5, learner=True)
    save_checkpoint(tmp_path / "m.pt", ENVS[algo], agent)
    env_id, loaded = load_checkpoint(tmp_path / "m.pt", ENVS[algo])
    assert env_id == ENVS[algo] and loaded.algo == algo and not loaded.learner
    x = torch.randn(3, *obs.shape, generator=torch.Generator().manual_seed(0))
    gen = torch.Generator()
    assert torch.equal(agent.act(x, gen, explore=False).actions, loaded.act(x, gen, explore=False).actions)
    state = loaded.policy_state()
    assert state.keys() == agent.policy_state().keys()
    assert all(torch.equal(v, agent.policy_state()[k]) for k, v in state.items())


def test_bad_files(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match=r"junk\.pt is corrupt"):
        load_checkpoint(tmp_path / "junk.pt")
    torch.save({"hello": 1}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a reflow RL checkpoint"):
        load_checkpoint(tmp_path / "other.pt")
    env = gym.make("CartPole-v1")
    agent = make_agent(
        "ppo", from_space(env.observation_space), from_space(env.action_space), AGENTS["ppo"][1](), 4, 5, True
    )
    save_checkpoint(tmp_path / "m.pt", "CartPole-v1", agent)
    with pytest.raises(CheckpointError, match="trained on 'CartPole-v1', not 'Acrobot-v1'"):
        load_checkpoint(tmp_path / "m.pt", "Acrobot-v1")
    data = torch.load(tmp_path / "m.pt", weights_only=True)
    data["obs"]["shape"] = [6]  # declared shape is wrong: the weights do not fit the rebuilt agent
    torch.save(data, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match="cannot rebuild its agent"):
        load_checkpoint(tmp_path / "bad.pt")
