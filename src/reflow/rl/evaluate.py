"""Evaluate a checkpoint: greedy actions (argmax of logits or Q-values) over N full episodes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from reflow.rl.algos.networks import ActorCritic
from reflow.rl.checkpoint import load_checkpoint


def evaluate(path: Path, episodes: int, env_id: str | None = None, seed: int = 1000) -> list[float]:
    """Returns of ``episodes`` greedy episodes, one env per episode, env i seeded ``seed + i``."""
    from reflow.rl import make_vec

    ck = load_checkpoint(path, env_id)
    ck.net.eval()
    returns: list[float] = []
    with make_vec(ck.env_id, episodes, seed=seed) as env:
        obs, _ = env.reset(seed=seed)
        finished = np.zeros(episodes, dtype=bool)
        while not finished.all():
            x = torch.as_tensor(np.asarray(obs, dtype=np.float32)).reshape(episodes, -1)
            with torch.no_grad():
                scores = ck.net.logits(x) if isinstance(ck.net, ActorCritic) else ck.net(x)
            obs, _, _, _, infos = env.step(scores.argmax(dim=1).numpy())
            if "_episode" in infos:
                for i in np.flatnonzero(infos["_episode"] & ~finished):
                    returns.append(float(infos["episode"]["r"][i]))
                    finished[i] = True
    return returns
