"""Symbolic gradients (``loss.backward()``) against torch.autograd on the same computation."""

from __future__ import annotations

import pytest
import torch

from reflow.errors import NotDifferentiable
from reflow.recurrent import Context
from reflow.recurrent.optim import SGD
from reflow.recurrent.symbolic import smax, smin

F64 = torch.float64


def test_gradients_through_windows_slices_and_matmul() -> None:
    gen = torch.Generator().manual_seed(0)
    w0, v0 = torch.randn(3, 4, generator=gen, dtype=F64), torch.randn(4, generator=gen, dtype=F64)
    ctx = Context("b i t", dtype=F64)
    b, i, t = ctx.dims
    B, _, T = ctx.bounds
    w, v = ctx.param(w0, (i,), "w"), ctx.param(v0, (i,), "v")
    x = ctx.rand((3,), (b, i, t), seed=1, dtype=F64).named("x")
    y = ((x @ w).tanh() * v).sum().named("y")
    g = y[b, i, t:T].discounted_sum(0.9)           # returns-to-go
    win = y[b, i, smax(0, t - 1):t + 1].sum()       # trailing window
    pre = y[b, i, 0:t + 1].discounted_sum(0.8)      # discounted prefix
    nst = y[b, i, t:smin(t + 2, T)].mean()          # n-step window, mean over a varying length
    loss = (g * g + 0.5 * win + 0.1 * pre.exp() + nst)[0:B, i, 0:T].mean().named("loss")
    loss.backward()
    out = ctx.compile(B=2, I=1, T=5, outputs=[x, loss, w.grad, v.grad], optimize=False).interpret().outputs

    X = out["x"][:, 0]
    wt, vt = w0.clone().requires_grad_(), v0.clone().requires_grad_()
    Y = (torch.tanh(X @ wt) * vt).sum(-1)
    n = Y.shape[1]
    G = torch.stack([sum(0.9 ** k * Y[:, s + k] for k in range(n - s)) for s in range(n)], 1)
    W = torch.stack([Y[:, max(0, s - 1):s + 1].sum(1) for s in range(n)], 1)
    P = torch.stack([sum(0.8 ** k * Y[:, k] for k in range(s + 1)) for s in range(n)], 1)
    N = torch.stack([Y[:, s:min(s + 2, n)].mean(1) for s in range(n)], 1)
    ref = (G * G + 0.5 * W + 0.1 * P.exp() + N).mean()
    ref.backward()
    assert torch.allclose(out["loss"][0], ref.detach())
    assert torch.allclose(out["grad_w"][0], wt.grad) and torch.allclose(out["grad_v"][0], vt.grad)


def test_backpropagation_through_time() -> None:
    """A recurrence over t differentiates into a recurrence of adjoints running backward in t."""
    gen = torch.Generator().manual_seed(1)
    w0 = torch.randn(3, 3, generator=gen, dtype=F64) * 0.5
    ctx = Context("i t", dtype=F64)
    i, t = ctx.dims
    _, T = ctx.bounds
    w = ctx.param(w0, (i,), "w")
    x = ctx.rand((3,), (i, t), seed=2, dtype=F64).named("x")
    h = ctx.placeholder((3,), domain=(i, t), name="h")
    h[i, 0] = x.tanh()
    h[i, t + 1] = (h @ w + x[i, t + 1]).tanh()
    loss = (h * h)[i, 0:T].sum().named("loss")
    loss.backward()
    prog = ctx.compile(I=1, T=4, outputs=[x, loss, w.grad])
    got, want = prog.run().outputs, prog.interpret().outputs
    assert torch.allclose(got["grad_w"], want["grad_w"])
    X = want["x"][0]
    wt = w0.clone().requires_grad_()
    hs = [torch.tanh(X[0])]
    for s in range(1, 4):
        hs.append(torch.tanh(hs[-1] @ wt + X[s]))
    (torch.stack(hs) ** 2).sum().backward()
    assert torch.allclose(want["grad_w"][0], wt.grad)


def test_parameters_step_over_iterations() -> None:
    """w[i] = w[i-1] - lr * grad[i-1]: three iterations of SGD on (w - target)^2 match the closed form."""
    ctx = Context("i", dtype=F64)
    (i,) = ctx.dims
    w = ctx.param(torch.tensor([1.0, -2.0], dtype=F64), (i,), "w")
    loss = ((w - 3.0) * (w - 3.0)).sum()
    loss.backward()
    SGD([w], lr=0.25).step()
    got = ctx.compile(I=4, outputs=[w]).run().outputs["w"]
    # w - 3 halves every step: (1 - 2 * 0.25) = 0.5
    expect = torch.stack([3.0 + (torch.tensor([-2.0, -5.0], dtype=F64) * 0.5 ** k) for k in range(4)])
    assert torch.allclose(got, expect)


def test_unsupported_gradient_is_named() -> None:
    ctx = Context("i t", dtype=F64)
    i, t = ctx.dims
    _, T = ctx.bounds
    w = ctx.param(torch.ones(()), (i,), "w")
    v = (w * ctx.symval(t, F64)).named("value")
    ahead = v[i, smin(t + 2, T - 1)]
    with pytest.raises(NotDifferentiable, match=r"value\[i, min\(t\+2, T-1\)\].*detach"):
        ahead[i, 0:T].sum().backward()
