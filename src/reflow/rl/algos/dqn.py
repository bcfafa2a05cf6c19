"""DQN: a ring replay buffer, the TD loss against a target network, and a linear epsilon schedule.

All sampling (minibatch indices) uses an explicit generator; the buffer is preallocated tensors.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from reflow.rl.algos.networks import QNetwork


@dataclass(frozen=True)
class DQNConfig:
    """DQN hyper-parameters."""

    lr: float = 5e-4
    gamma: float = 0.99
    buffer_size: int = 50_000
    batch_size: int = 128
    learning_starts: int = 1000
    train_every: int = 1
    target_every: int = 250
    eps_start: float = 1.0
    eps_end: float = 0.05
    eps_fraction: float = 0.3
    hidden: int = 64


class ReplayBuffer:
    """Fixed-size ring of transitions ``(obs, action, reward, next_obs, terminated)``."""

    def __init__(self, capacity: int, obs_dim: int) -> None:
        self.capacity = capacity
        self.obs = torch.zeros(capacity, obs_dim)
        self.next_obs = torch.zeros(capacity, obs_dim)
        self.actions = torch.zeros(capacity, dtype=torch.long)
        self.rewards = torch.zeros(capacity)
        self.terms = torch.zeros(capacity)
        self.pos = 0
        self.size = 0

    def add(self, obs: torch.Tensor, actions: torch.Tensor, rewards: torch.Tensor, next_obs: torch.Tensor,
            terms: torch.Tensor) -> None:
        """Append a batch of transitions (one per env), overwriting the oldest when full."""
        for i in range(obs.shape[0]):
            p = self.pos
            self.obs[p], self.actions[p], self.rewards[p] = obs[i], actions[i], rewards[i]
            self.next_obs[p], self.terms[p] = next_obs[i], terms[i]
            self.pos = (p + 1) % self.capacity
            self.size = min(self.size + 1, self.capacity)

    def sample(self, n: int, gen: torch.Generator) -> tuple[torch.Tensor, ...]:
        """``n`` transitions drawn uniformly with replacement."""
        idx = torch.randint(0, self.size, (n,), generator=gen)
        return self.obs[idx], self.actions[idx], self.rewards[idx], self.next_obs[idx], self.terms[idx]


def epsilon(step: int, total: int, cfg: DQNConfig) -> float:
    """Linear decay from eps_start to eps_end over ``eps_fraction`` of the run, then flat."""
    span = max(1.0, cfg.eps_fraction * total)
    return cfg.eps_end + (cfg.eps_start - cfg.eps_end) * max(0.0, 1.0 - step / span)


def dqn_loss(q: QNetwork, target: QNetwork, batch: tuple[torch.Tensor, ...], gamma: float) -> torch.Tensor:
    """Mean squared TD error: Q(s,a) against r + gamma * max_a' Q_target(s',a') on non-terminal s'."""
    obs, actions, rewards, next_obs, terms = batch
    with torch.no_grad():
        target_q = rewards + gamma * (1.0 - terms) * target(next_obs).max(dim=1).values
    q_sa = q(obs).gather(1, actions.unsqueeze(1)).squeeze(1)
    return nn.functional.mse_loss(q_sa, target_q)
