"""Seeded weight initialisation: orthogonal weights (the usual choice for PPO and DQN), zero biases."""

from __future__ import annotations

import torch
from torch import nn


def orthogonal_(weight: torch.Tensor, gen: torch.Generator, std: float) -> None:
    """Fill ``weight`` (rows first, any shape) with an orthogonal matrix times ``std``, drawn from ``gen``."""
    rows = weight.shape[0]
    cols = weight.numel() // rows
    w = torch.randn((max(rows, cols), min(rows, cols)), generator=gen)
    q, r = torch.linalg.qr(w)
    q = q * torch.sign(torch.diagonal(r))
    if rows < cols:
        q = q.T
    with torch.no_grad():
        weight.copy_((std * q).reshape(weight.shape))


def linear(n_in: int, n_out: int, gen: torch.Generator, std: float) -> nn.Linear:
    layer = nn.Linear(n_in, n_out)
    orthogonal_(layer.weight, gen, std)
    with torch.no_grad():
        layer.bias.zero_()
    return layer
