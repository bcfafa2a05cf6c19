"""Generalised advantage estimation over a rollout of shape ``(steps, envs)``.

``dones[t]`` marks that the episode ended at step t (the env was reset after it), so the bootstrap from step
t+1 is cut. Vectorised over envs, a single backward loop over time.
"""

from __future__ import annotations

import torch


def compute_gae(rewards: torch.Tensor, values: torch.Tensor, dones: torch.Tensor, last_value: torch.Tensor,
                gamma: float, lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Return ``(advantages, returns)``; ``returns = advantages + values`` are the critic's targets."""
    steps = rewards.shape[0]
    adv = torch.zeros_like(rewards)
    running = torch.zeros_like(last_value)
    for t in reversed(range(steps)):
        next_value = last_value if t == steps - 1 else values[t + 1]
        live = 1.0 - dones[t]
        delta = rewards[t] + gamma * next_value * live - values[t]
        running = delta + gamma * lam * live * running
        adv[t] = running
    return adv, adv + values
