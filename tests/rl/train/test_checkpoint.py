"""Checkpoint round trip and clear errors for missing, corrupt and mismatched files."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from reflow.errors import CheckpointError
from reflow.rl.algos.networks import ActorCritic
from reflow.rl.checkpoint import load_checkpoint, save_checkpoint


def test_round_trip(tmp_path: Path) -> None:
    net = ActorCritic(4, 2, 16, seed=5)
    save_checkpoint(tmp_path / "m.pt", "ppo", "CartPole-v1", net, 4, 2, 16)
    ck = load_checkpoint(tmp_path / "m.pt", "CartPole-v1")
    assert (ck.algo, ck.env_id) == ("ppo", "CartPole-v1")
    x = torch.randn(3, 4, generator=torch.Generator().manual_seed(0))
    assert isinstance(ck.net, ActorCritic)
    assert torch.equal(ck.net.logits(x), net.logits(x)) and torch.equal(ck.net.value(x), net.value(x))


def test_bad_files(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match=r"junk\.pt is corrupt"):
        load_checkpoint(tmp_path / "junk.pt")
    torch.save({"hello": 1}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a reflow RL checkpoint"):
        load_checkpoint(tmp_path / "other.pt")
    net = ActorCritic(4, 2, 16, seed=5)
    save_checkpoint(tmp_path / "m.pt", "ppo", "CartPole-v1", net, 4, 2, 16)
    with pytest.raises(CheckpointError, match="trained on 'CartPole-v1', not 'Acrobot-v1'"):
        load_checkpoint(tmp_path / "m.pt", "Acrobot-v1")
    save_checkpoint(tmp_path / "bad.pt", "ppo", "CartPole-v1", net, 6, 2, 16)  # declared shape is wrong
    with pytest.raises(CheckpointError, match="do not match"):
        load_checkpoint(tmp_path / "bad.pt")
