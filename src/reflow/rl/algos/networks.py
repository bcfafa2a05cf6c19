"""Small MLPs for vector observations: an actor-critic for PPO and a Q-network for DQN.

Weights are initialised from an explicit ``torch.Generator`` so that building a network never touches torch's
global random state: the same seed gives the same weights in any process.
"""

from __future__ import annotations

import torch
from torch import nn


def _init(layer: nn.Linear, gen: torch.Generator, std: float) -> nn.Linear:
    """Orthogonal weights (the usual PPO choice) drawn from ``gen``, zero bias."""
    with torch.no_grad():
        w = torch.randn(layer.weight.shape, generator=gen)
        q, r = torch.linalg.qr(w.T if w.shape[0] < w.shape[1] else w)
        q = q * torch.sign(torch.diagonal(r))
        layer.weight.copy_(std * (q.T if w.shape[0] < w.shape[1] else q))
        layer.bias.zero_()
    return layer


def mlp(sizes: list[int], gen: torch.Generator, out_std: float) -> nn.Sequential:
    """Linear layers with tanh between them; the last layer is initialised with ``out_std``."""
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        last = i == len(sizes) - 2
        layers.append(_init(nn.Linear(sizes[i], sizes[i + 1]), gen, out_std if last else 2**0.5))
        if not last:
            layers.append(nn.Tanh())
    return nn.Sequential(*layers)


class ActorCritic(nn.Module):
    """Separate policy (logits over discrete actions) and value heads on the observation vector."""

    def __init__(self, obs_dim: int, n_actions: int, hidden: int, seed: int) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.actor = mlp([obs_dim, hidden, hidden, n_actions], gen, 0.01)
        self.critic = mlp([obs_dim, hidden, hidden, 1], gen, 1.0)

    def logits(self, obs: torch.Tensor) -> torch.Tensor:
        """Unnormalised action log-probabilities."""
        out: torch.Tensor = self.actor(obs)
        return out

    def value(self, obs: torch.Tensor) -> torch.Tensor:
        """State value, shape ``(batch,)``."""
        out: torch.Tensor = self.critic(obs).squeeze(-1)
        return out


class QNetwork(nn.Module):
    """Q-values for every discrete action."""

    def __init__(self, obs_dim: int, n_actions: int, hidden: int, seed: int) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.n_actions = n_actions
        self.net = mlp([obs_dim, hidden, hidden, n_actions], gen, 1.0)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """Q(obs, a) for all a, shape ``(batch, n_actions)``."""
        out: torch.Tensor = self.net(obs)
        return out
