"""Optimizers as recurrences: a parameter's value at the next step is an update of its value and gradient
at this one.

A parameter ``w`` with domain ``(i,)`` steps once per iteration: ``w[0] = init``,
``w[i] = update(w, g)[i-1]``.
With domain ``(i, k)`` (k epochs per iteration, as PPO does) it steps in lexicographic order: ``w[i, k]`` is
the update made at ``(i, k-1)``, and ``w[i, 0]`` the one made at ``(i-1, K-1)``. Optimizer state (Adam's
moments, the step count for its bias correction) are recurrences over the same domain.
"""

from __future__ import annotations

from collections.abc import Sequence

from reflow.errors import RecurrentError
from reflow.recurrent.conditions import Cond, conj
from reflow.recurrent.symbolic import Expr, var
from reflow.recurrent.tensor import RecurrentTensor


def _steps(p: RecurrentTensor) -> list[tuple[Cond, tuple[Expr, ...]]]:
    """The cases defining a value at each point from the previous point in lexicographic order."""
    ctx, dom = p.ctx, p.domain
    cases = []
    for j in range(len(dom) - 1, -1, -1):
        cond = conj(var(dom[j]) >= 1, *(var(d) == 0 for d in dom[j + 1:]))
        index = tuple(var(d) if k < j else var(d) - 1 if k == j else ctx.bound(d) - 1
                      for k, d in enumerate(dom))
        cases.append((cond, index))
    return cases


def recur(x: RecurrentTensor, first: RecurrentTensor | float, update: RecurrentTensor) -> None:
    """Define placeholder ``x``: ``first`` at the first point, then ``update`` read at the previous point."""
    x[x.ctx.dims_cond_first(x.domain)] = first
    for cond, index in _steps(x):
        x[cond] = update[index]


class Optimizer:
    """Base: ``step()`` defines every parameter's recurrence from its gradient (after ``loss.backward()``)."""

    def __init__(self, params: Sequence[RecurrentTensor], lr: float,
                 max_grad_norm: float | None = None) -> None:
        if not params:
            raise RecurrentError("an optimizer needs at least one parameter")
        self.params = list(params)
        self.lr = lr
        self.max_grad_norm = max_grad_norm
        self.ctx = self.params[0].ctx
        doms = {p.domain for p in self.params}
        if len(doms) != 1:
            raise RecurrentError(f"an optimizer's parameters must share one domain, got {sorted(doms)}")

    def grads(self) -> list[RecurrentTensor]:
        gs = [p.grad for p in self.params]
        if self.max_grad_norm is None:
            return gs
        total = gs[0] * gs[0]
        total = total.sum()
        for g in gs[1:]:
            total = total + (g * g).sum()
        scale = (self.max_grad_norm / (total.sqrt() + 1e-6)).minimum(1.0)
        return [g * scale for g in gs]

    def step(self) -> None:
        for p, g in zip(self.params, self.grads(), strict=True):
            new = self.update(p, g)
            for cond, index in _steps(p):
                p[cond] = new[index]

    def update(self, p: RecurrentTensor, g: RecurrentTensor) -> RecurrentTensor:
        raise NotImplementedError


class SGD(Optimizer):
    def update(self, p: RecurrentTensor, g: RecurrentTensor) -> RecurrentTensor:
        return p - self.lr * g


class Adam(Optimizer):
    """Adam (Kingma & Ba), bias-corrected, with its moments as recurrences beside each parameter."""

    def __init__(self, params: Sequence[RecurrentTensor], lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, max_grad_norm: float | None = None) -> None:
        super().__init__(params, lr, max_grad_norm)
        self.betas, self.eps = betas, eps

    def step(self) -> None:
        ctx, dom = self.ctx, self.params[0].domain
        count = ctx.placeholder((), domain=dom, name="adam_count")
        recur(count, 1.0, count + 1.0)
        b1, b2 = self.betas
        corr1 = 1.0 - ctx.const(b1) ** count
        corr2 = 1.0 - ctx.const(b2) ** count
        for p, g in zip(self.params, self.grads(), strict=True):
            m = ctx.placeholder(p.shape, p.dtype, dom, name=f"{p.label}_m")
            v = ctx.placeholder(p.shape, p.dtype, dom, name=f"{p.label}_v")
            m_new = b1 * m + (1.0 - b1) * g
            v_new = b2 * v + (1.0 - b2) * (g * g)
            recur(m, 0.0, m_new)
            recur(v, 0.0, v_new)
            new = p - self.lr * (m_new / corr1) / ((v_new / corr2).sqrt() + self.eps)
            for cond, index in _steps(p):
                p[cond] = new[index]
