"""Small networks and distributions over recurrent tensors: what RL algorithms need, nothing more.

``MLP`` makes its weights as parameters over a domain (usually ``(i,)``: one value per iteration, stepped by
an optimizer), initialized orthogonally from an explicit seed like CleanRL's. ``Categorical`` samples with
the Gumbel-max trick from the program's counter-based generator, so a sample is the same whether a step is
computed alone or in a batch.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any

import torch

from reflow.recurrent.context import Context
from reflow.recurrent.tensor import RecurrentTensor


def orthogonal(shape: tuple[int, int], gain: float, gen: torch.Generator, dtype: torch.dtype) -> torch.Tensor:
    w = torch.empty(shape, dtype=torch.float64)
    flat = torch.randn(max(shape), min(shape), generator=gen, dtype=torch.float64)
    q, r = torch.linalg.qr(flat)
    q = q * torch.sign(torch.diagonal(r))
    w.copy_(q if shape[0] >= shape[1] else q.T)
    return (w * gain).to(dtype)


class MLP:
    """``x -> act(x W1 + b1) -> ... -> x Wn + bn``; the last layer's gain is ``out_gain``. A first size that
    is a shape (an image observation) means: flatten inputs of that shape."""

    def __init__(self, ctx: Context, sizes: Sequence[int | tuple[int, ...]], domain: Sequence[Any], seed: int,
                 name: str = "mlp", activation: str = "tanh", out_gain: float = 1.0) -> None:
        gen = torch.Generator().manual_seed(seed)
        first = sizes[0]
        self.flat = (math.prod(first),) if isinstance(first, tuple) and len(first) != 1 else None
        widths = [int(math.prod(s)) if isinstance(s, tuple) else s for s in sizes]
        self.activation = activation
        self.params: list[RecurrentTensor] = []
        self.layers: list[tuple[RecurrentTensor, RecurrentTensor]] = []
        for k, (n_in, n_out) in enumerate(itertools.pairwise(widths)):
            gain = out_gain if k == len(widths) - 2 else math.sqrt(2.0)
            w = ctx.param(orthogonal((n_in, n_out), gain, gen, ctx.dtype), domain, name=f"{name}_w{k}")
            b = ctx.param(torch.zeros(n_out, dtype=ctx.dtype), domain, name=f"{name}_b{k}")
            self.layers.append((w, b))
            self.params += [w, b]

    def __call__(self, x: RecurrentTensor, at: Any = None) -> RecurrentTensor:
        """The network at the parameters' own point, or read at index ``at`` (e.g. ``(i, 0)``)."""
        if self.flat is not None:
            x = x.reshape(self.flat)
        for k, (w, b) in enumerate(self.layers):
            if at is not None:
                w, b = w[at], b[at]
            x = x @ w + b
            if k < len(self.layers) - 1:
                x = x.tanh() if self.activation == "tanh" else x.relu()
        return x


class Categorical:
    """A categorical distribution over the last axis of ``logits``."""

    def __init__(self, logits: RecurrentTensor) -> None:
        self.logits = logits
        self.logp_all = logits.log_softmax(-1)

    def sample(self, seed: int) -> RecurrentTensor:
        x = self.logits
        u = x.ctx.rand(x.shape, x.domain, seed, x.dtype, name="gumbel")
        return (self.logits - (-u.log()).log()).argmax(-1)

    def log_prob(self, action: RecurrentTensor) -> RecurrentTensor:
        return self.logp_all.take(action)

    def entropy(self) -> RecurrentTensor:
        return -(self.logp_all.exp() * self.logp_all).sum(-1)


def epsilon_greedy(q: RecurrentTensor, eps: RecurrentTensor | float, seed: int) -> RecurrentTensor:
    """The action with the largest ``q``, or with probability ``eps`` a uniformly random one."""
    ctx = q.ctx
    n = int(q.shape[-1])
    explore = ctx.rand((), q.domain, seed, q.dtype, name="explore") < eps
    pick = (ctx.rand((), q.domain, seed + 1, q.dtype, name="uniform_action") * float(n)).cast(torch.int64)
    return pick.minimum(n - 1).where_(explore, q.argmax(-1))
