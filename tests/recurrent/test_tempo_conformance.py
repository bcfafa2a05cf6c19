"""Tempo's own symbolic-autodiff test (lsds/Tempo, tests/symbolic_autodiff_test.py), re-expressed in
reflow.recurrent: the same index patterns, sizes (4x4 values, T = 100) and torch reference.

At every t, ``z[t] = (x[p(t)] * y[p(t)]).sum()`` for an index pattern p, and the gradient of the sum of z over
t with respect to every ``x[s]`` is compared with torch.autograd on the stacked values. Tempo's suite runs
identity, a fixed range, everything, the future and both sliding windows, with and without its optimizations;
it leaves ``0:t+1`` (an off-by-one it notes), a window open on both sides, ``t % 8`` and ``t // 2`` commented
out. Here the first two pass too; the last two are not affine shifts, so backward() names them and asks for
detach().
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch

from reflow.errors import NotDifferentiable
from reflow.recurrent import Context
from reflow.recurrent.symbolic import Expr, smax, smin

T_UB = 100

Ref = Callable[[int], Any]


def patterns(t: Expr, T: Expr) -> dict[str, tuple[Any, Ref]]:
    """Each pattern as a reflow index and as a python index into the stacked torch values."""
    return {
        "identity": (t, lambda s: s),
        "fixed_range": (slice(0, 8), lambda s: slice(0, 8)),
        "all": (slice(0, T), lambda s: slice(0, T_UB)),
        "all_past": (slice(0, t + 1), lambda s: slice(0, s + 1)),
        "all_future": (slice(t, T), lambda s: slice(s, T_UB)),
        "past_sliding_window": (slice(smax(0, t - 4), t + 1), lambda s: slice(max(0, s - 4), s + 1)),
        "future_sliding_window": (slice(t, smin(T, t + 3)), lambda s: slice(s, min(T_UB, s + 3))),
        "past_future_sliding_window": (slice(smax(0, t - 4), smin(T, t + 3)),
                                       lambda s: slice(max(0, s - 4), min(T_UB, s + 3))),
        "mod_8": (t % 8, lambda s: s % 8),
        "floor_div_2": (t // 2, lambda s: s // 2),
    }


def build(pattern: str) -> tuple[Context, Any, Any, Any, Ref]:
    ctx = Context("t")
    (t,) = ctx.dims
    (T,) = ctx.bounds
    # x[s] for every s is a leaf of its own: a parameter over t whose first value is given and whose others
    # are fresh noise (a parameter's gradient stops at it, so grad_x[s] is dL/dx[s] at every s)
    x = ctx.param(torch.randn(4, 4, generator=torch.Generator().manual_seed(0)), (t,), "x")
    x[True] = ctx.rand((4, 4), (t,), seed=1) * 2.0 - 1.0
    y = ctx.placeholder((4, 4), domain=(t,), name="y")
    y[True] = ctx.const(torch.arange(16.0).reshape(4, 4))
    index, ref = patterns(t, T)[pattern]
    z = (x[index] * y[index]).sum().named("z")
    loss = z[0:T].sum() if z.domain else z * float(T_UB)  # a fixed pattern makes z the same at every t
    return ctx, x, z, loss.named("loss"), ref


@pytest.mark.parametrize("optimize", [False, True])
@pytest.mark.parametrize("pattern", ["identity", "fixed_range", "all", "all_past", "all_future",
                                     "past_sliding_window", "future_sliding_window",
                                     "past_future_sliding_window"])
def test_gradient_through_index_pattern_matches_torch(pattern: str, optimize: bool) -> None:
    ctx, x, z, loss, ref = build(pattern)
    loss.backward()
    prog = ctx.compile(T=T_UB, outputs=[("x", x), ("z", z), ("grad", ctx.grads[x.node])], optimize=optimize)
    got = prog.run().outputs
    xs = got["x"].clone().requires_grad_()
    ys = torch.arange(16.0).reshape(4, 4).expand(T_UB, 4, 4)
    zs = []
    for s in range(T_UB):  # as Tempo's reference: one backward per z[t], gradients accumulating
        zt = (xs[ref(s)] * ys[ref(s)]).sum()
        zt.backward()
        zs.append(zt.detach())
    assert torch.allclose(got["z"], torch.stack(zs) if z.domain else zs[0], rtol=1e-5, atol=1e-4)
    assert xs.grad is not None and not xs.grad.isnan().any()
    assert got["grad"].shape == (T_UB, 4, 4)
    assert torch.allclose(got["grad"], xs.grad, atol=1e-5)


@pytest.mark.parametrize("pattern", ["mod_8", "floor_div_2"])
def test_non_affine_index_is_refused_by_name(pattern: str) -> None:
    _, _, _, loss, _ = build(pattern)
    with pytest.raises(NotDifferentiable, match=r"x\[.*t.*(% 8|// 2)\].*not t plus a constant.*detach"):
        loss.backward()
