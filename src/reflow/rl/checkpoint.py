"""Save and load a trained policy: network weights plus everything needed to rebuild the network.

A checkpoint is one ``torch.save`` file holding a plain dict (``format``, ``algo``, ``env_id``, ``obs_dim``,
``n_actions``, ``hidden``, ``state_dict``). Loading checks every field and reports a corrupt or mismatched
file by name, so ``reflow eval`` never fails with a bare unpickling or shape error.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from reflow.errors import CheckpointError
from reflow.rl.algos.networks import ActorCritic, QNetwork

FORMAT = "reflow-rl-checkpoint-1"


@dataclass(frozen=True)
class Checkpoint:
    """A loaded policy and what it was trained on."""

    algo: str
    env_id: str
    net: nn.Module


def build_net(algo: str, obs_dim: int, n_actions: int, hidden: int, seed: int) -> nn.Module:
    """The network ``algo`` trains: an actor-critic for ppo, a Q-network for dqn."""
    if algo == "ppo":
        return ActorCritic(obs_dim, n_actions, hidden, seed)
    return QNetwork(obs_dim, n_actions, hidden, seed)


def save_checkpoint(path: Path, algo: str, env_id: str, net: nn.Module, obs_dim: int, n_actions: int,
                    hidden: int) -> None:
    """Write ``net`` and its shape description to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"format": FORMAT, "algo": algo, "env_id": env_id, "obs_dim": obs_dim, "n_actions": n_actions,
                "hidden": hidden, "state_dict": net.state_dict()}, path)


def load_checkpoint(path: Path, env_id: str | None = None) -> Checkpoint:
    """Read a checkpoint; raise CheckpointError naming the file and the problem if it is unusable."""
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist; "
                              "pass the model.pt written by `reflow train`")
    try:
        data: Any = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many kinds for a corrupt file
        raise CheckpointError(f"checkpoint {path} is corrupt or not a torch file ({e.__class__.__name__}); "
                              "re-run `reflow train` to write a new one") from e
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint {path} is not a reflow RL checkpoint (expected format {FORMAT})")
    if env_id is not None and data["env_id"] != env_id:
        raise CheckpointError(f"checkpoint {path} was trained on {data['env_id']!r}, not {env_id!r}; "
                              f"evaluate it on {data['env_id']!r} or train one for {env_id!r}")
    if data["algo"] not in ("ppo", "dqn"):
        raise CheckpointError(f"checkpoint {path} names unknown algo {data['algo']!r}")
    net = build_net(data["algo"], int(data["obs_dim"]), int(data["n_actions"]), int(data["hidden"]), 0)
    try:
        net.load_state_dict(data["state_dict"])
    except RuntimeError as e:
        raise CheckpointError(f"checkpoint {path}: weights do not match its declared network shape ({e}); "
                              "the file is damaged, re-run `reflow train`") from e
    return Checkpoint(str(data["algo"]), str(data["env_id"]), net)
