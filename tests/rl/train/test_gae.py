"""GAE against a naive oracle: the discounted sum of TD residuals, computed episode by episode."""

from __future__ import annotations

import torch

from reflow.rl.algos.gae import compute_gae


def naive_gae(rewards: torch.Tensor, values: torch.Tensor, dones: torch.Tensor, last_value: torch.Tensor,
              gamma: float, lam: float) -> torch.Tensor:
    steps, envs = rewards.shape
    adv = torch.zeros(steps, envs, dtype=torch.float64)
    for e in range(envs):
        for t in range(steps):
            total, weight = 0.0, 1.0
            for k in range(t, steps):
                nxt = last_value[e] if k == steps - 1 else values[k + 1, e]
                live = 1.0 - float(dones[k, e])
                total += weight * (float(rewards[k, e]) + gamma * float(nxt) * live - float(values[k, e]))
                if live == 0.0:
                    break
                weight *= gamma * lam
            adv[t, e] = total
    return adv


def test_gae_matches_naive_oracle() -> None:
    gen = torch.Generator().manual_seed(3)
    rewards = torch.randn(12, 4, generator=gen, dtype=torch.float64)
    values = torch.randn(12, 4, generator=gen, dtype=torch.float64)
    dones = (torch.rand(12, 4, generator=gen) < 0.2).double()
    last = torch.randn(4, generator=gen, dtype=torch.float64)
    adv, ret = compute_gae(rewards, values, dones, last, 0.97, 0.9)
    torch.testing.assert_close(adv, naive_gae(rewards, values, dones, last, 0.97, 0.9))
    torch.testing.assert_close(ret, adv + values)


def test_gae_lambda_zero_is_one_step_td() -> None:
    rewards = torch.tensor([[1.0], [2.0]])
    values = torch.tensor([[0.5], [0.25]])
    dones = torch.tensor([[0.0], [1.0]])
    adv, _ = compute_gae(rewards, values, dones, torch.tensor([9.0]), 0.5, 0.0)
    # step 0: 1 + 0.5 * 0.25 - 0.5; step 1 ends the episode, so no bootstrap from 9.0: 2 - 0.25
    torch.testing.assert_close(adv, torch.tensor([[0.625], [1.75]]))
