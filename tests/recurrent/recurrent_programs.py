"""Small recurrent programs shared by the tests, and a helper comparing a compiled run with the oracle."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch

from reflow.recurrent import Context, Program, RecurrentTensor

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "recurrent"


def check_against_oracle(ctx: Context, bounds: dict[str, int], outputs: dict[str, RecurrentTensor],
                         atol: float = 1e-9, **options: Any) -> tuple[Program, dict[str, torch.Tensor]]:
    """Compile with all passes, run, and compare every output, log and parameter with the interpreter."""
    prog = ctx.compile(bounds, outputs=list(outputs.items()), **options)
    got, want = prog.run(), prog.interpret()
    for name in outputs:
        a, b = got.outputs[name], want.outputs[name]
        assert a.shape == b.shape, (name, a.shape, b.shape)
        if a.dtype.is_floating_point:
            assert torch.allclose(a.double(), b.double(), atol=atol, rtol=1e-6), (name, (a - b).abs().max())
        else:
            assert torch.equal(a, b), name
    assert len(got.logs) == len(want.logs)
    for x, y in zip(got.logs, want.logs, strict=True):
        assert x.keys() == y.keys()
        for k in x:
            assert math.isclose(x[k], y[k], rel_tol=1e-5, abs_tol=1e-6), (k, x[k], y[k])
    for k in want.params:
        assert torch.allclose(got.params[k].double(), want.params[k].double(), atol=1e-6), k
    return prog, got.outputs


def returns_program() -> tuple[Context, dict[str, RecurrentTensor]]:
    """Rewards over (b, t); returns, n-step returns, windows, prefix sums and a recurrence."""
    ctx = Context("b t", dtype=torch.float64)
    b, t = ctx.dims
    B, T = ctx.bounds
    r = ctx.rand((), (b, t), seed=7, dtype=torch.float64).named("r")
    from reflow.recurrent.symbolic import smax, smin

    y = ctx.placeholder((), domain=(b, t), name="y")
    y[b, 0] = r
    y[b, t + 1] = 0.5 * y + r[b, t + 1]
    outs = {
        "r": r,
        "G": r[b, t:T].discounted_sum(0.9),
        "G3": r[b, t:smin(t + 3, T)].discounted_sum(0.9),
        "prefix": r[b, 0:t + 1].sum(),
        "trail": r[b, smax(0, t - 1):t + 1].sum(),
        "total": r[0:B, 0:T].sum(),
        "y": y,
    }
    return ctx, outs
