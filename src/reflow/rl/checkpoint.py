"""Save and load a trained policy: the agent's policy state plus everything needed to rebuild the agent.

A checkpoint is one ``torch.save`` file holding a plain dict: ``format``, ``algo``, ``env_id``, the
observation and action specs, the algorithm's config and the policy state. Loading rebuilds a policy-role
agent with the staged build and loads the weights; a corrupt or mismatched file is reported by name, so
``reflow eval`` never fails with a bare unpickling or shape error.
"""

from __future__ import annotations

from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import torch

from reflow.components import Agent, Spec
from reflow.errors import CheckpointError, ReflowError
from reflow.rl.algos import AGENTS, make_agent

FORMAT = "reflow-rl-checkpoint-2"


def save_checkpoint(
    path: Path, env_id: str, agent: Agent, state: dict[str, torch.Tensor] | None = None
) -> None:
    """Write ``agent``'s description and policy state (or ``state``: the best evaluated one) to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(
        {
            "format": FORMAT,
            "algo": agent.algo,
            "env_id": env_id,
            "obs": asdict(agent.obs_spec),
            "action": asdict(agent.action_spec),
            "config": asdict(agent.config),
            "state_dict": state if state is not None else agent.policy_state(),
        },
        path,
    )


def _spec(d: dict[str, Any]) -> Spec:
    def bounds(v: Any) -> tuple[float, ...] | None:
        return None if v is None else tuple(float(x) for x in v)

    return Spec(tuple(int(x) for x in d["shape"]), str(d["dtype"]), None if d["n"] is None else int(d["n"]),
                bounds(d["low"]), bounds(d["high"]))


def config_from(cls: type[Any], values: dict[str, Any]) -> Any:
    """A config dataclass from plain values (lists become tuples); unknown keys are refused by name."""
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ReflowError(f"unknown {cls.__name__} field(s) {unknown}; known: {sorted(names)}")
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


def load_checkpoint(path: Path, env_id: str | None = None) -> tuple[str, Agent]:
    """The env id and the policy-role agent of a checkpoint; CheckpointError naming the file if unusable."""
    if not path.is_file():
        raise CheckpointError(
            f"checkpoint {path} does not exist; pass the model.pt written by `reflow train`"
        )
    try:
        data: Any = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many kinds for a corrupt file
        raise CheckpointError(
            f"checkpoint {path} is corrupt or not a torch file ({e.__class__.__name__}); "
            "re-run `reflow train` to write a new one"
        ) from e
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint {path} is not a reflow RL checkpoint (expected format {FORMAT})")
    if env_id is not None and data["env_id"] != env_id:
        raise CheckpointError(
            f"checkpoint {path} was trained on {data['env_id']!r}, not {env_id!r}; "
            f"evaluate it on {data['env_id']!r} or train one for {env_id!r}"
        )
    if data["algo"] not in AGENTS:
        raise CheckpointError(f"checkpoint {path} names unknown algo {data['algo']!r}")
    try:
        config = config_from(AGENTS[data["algo"]][1], data["config"])
        agent = make_agent(data["algo"], _spec(data["obs"]), _spec(data["action"]), config, 1, 0, False)
        agent.load_policy_state(data["state_dict"])
    except (ReflowError, TypeError, KeyError) as e:
        raise CheckpointError(
            f"checkpoint {path}: cannot rebuild its agent ({e}); the file is damaged or "
            "from another version, re-run `reflow train`"
        ) from e
    return str(data["env_id"]), agent
