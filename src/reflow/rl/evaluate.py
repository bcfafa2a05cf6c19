"""Evaluate a checkpoint: the greedy policy (argmax, Gaussian mean) over N full episodes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from reflow.components import Agent
from reflow.components.agent import obs_tensor
from reflow.rl.checkpoint import load_checkpoint


def evaluate(path: Path, episodes: int, env_id: str | None = None, seed: int = 1000) -> list[float]:
    """Returns of ``episodes`` greedy episodes of a checkpoint, one env each, env i seeded ``seed + i``."""
    trained_on, agent = load_checkpoint(path, env_id)
    return evaluate_agent(agent, trained_on, episodes, seed)


def evaluate_agent(
    agent: Agent, env_id: str, episodes: int, seed: int = 1000, num_workers: int = 1
) -> list[float]:
    """Returns of ``episodes`` greedy episodes of ``agent`` on ``env_id``."""
    from reflow.rl import make_vec
    from reflow.rl.atari import env_for

    make_id, kwargs = env_for(env_id)
    returns: list[float] = []
    gen = torch.Generator().manual_seed(seed)
    with make_vec(make_id, episodes, num_workers=num_workers, seed=seed, env_kwargs=kwargs) as env:
        obs, _ = env.reset(seed=seed)
        finished = np.zeros(episodes, dtype=bool)
        while not finished.all():
            act = agent.act(obs_tensor(obs, agent.obs_spec), gen, explore=False)
            obs, _, _, _, infos = env.step(act.env_actions)
            if "_episode" in infos:
                for i in np.flatnonzero(infos["_episode"] & ~finished):
                    returns.append(float(infos["episode"]["r"][i]))
                    finished[i] = True
    return returns
