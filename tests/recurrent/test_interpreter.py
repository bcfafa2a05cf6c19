"""The reference interpreter: the meaning of recurrent programs, checked on values worked out by hand, and
the errors bad programs get (each naming the tensor and the index expression)."""

from __future__ import annotations

import pytest
import torch

from reflow.errors import IndexOutOfDomain, MissingBound, NoBaseCase, RecurrentError, ShapeMismatch
from reflow.recurrent import Context
from reflow.recurrent.symbolic import smax, smin
from reflow.recurrent.udf import log, udf


def ctx2() -> Context:
    return Context("i t", dtype=torch.float64)


def test_recurrence_with_base_case_and_shift() -> None:
    ctx = ctx2()
    i, t = ctx.dims
    x = ctx.placeholder((), domain=(i, t), name="x")
    x[i, 0] = 1.0
    x[i, t + 1] = x * 0.5 + ctx.symval(i)
    out = ctx.compile(I=2, T=4, outputs=[x], optimize=False).interpret().outputs["x"]
    assert out.tolist() == [[1.0, 0.5, 0.25, 0.125], [1.0, 1.5, 1.75, 1.875]]


def test_first_true_case_wins() -> None:
    ctx = ctx2()
    i, t = ctx.dims
    _, T = ctx.bounds
    y = ctx.placeholder((), domain=(i, t), name="y")
    y[t == T - 1] = 100.0
    y[t % 2 == 0] = ctx.symval(t)
    y[True] = -1.0
    out = ctx.compile(I=1, T=5, outputs=[y], optimize=False).interpret().outputs["y"]
    assert out.tolist() == [[0.0, -1.0, 2.0, -1.0, 100.0]]


def test_slices_windows_and_reductions() -> None:
    ctx = ctx2()
    _, t = ctx.dims
    _, T = ctx.bounds
    x = ctx.symval(t, torch.float64).named("x")  # x[t] = t
    outs = {"suffix": x[t:T].sum(), "nstep": x[t:smin(t + 2, T)].sum(), "prefix": x[0:t + 1].sum(),
            "trail": x[smax(0, t - 1):t + 1].sum(), "disc": x[t:T].discounted_sum(0.5), "all": x[0:T].sum(),
            "gather": x[0:T]}
    got = ctx.compile(I=1, T=4, outputs=list(outs.items()), optimize=False).interpret().outputs
    assert got["suffix"].tolist() == [6.0, 6.0, 5.0, 3.0]
    assert got["nstep"].tolist() == [1.0, 3.0, 5.0, 3.0]
    assert got["prefix"].tolist() == [0.0, 1.0, 3.0, 6.0]
    assert got["trail"].tolist() == [0.0, 1.0, 3.0, 5.0]
    assert got["disc"].tolist() == [0 + 0.5 + 0.5 + 0.375, 1 + 1 + 0.75, 2 + 1.5, 3.0]
    assert float(got["all"]) == 6.0 and got["gather"].tolist() == [0.0, 1.0, 2.0, 3.0]


def test_batched_stateful_op_is_called_in_point_order() -> None:
    """A user op batched over b is called once per (i, t), and in lexicographic order of its points, as a
    resource's state requires, even when the program asks for later points first."""
    ctx = Context("b i t", dtype=torch.float64)
    b, i, t = ctx.dims
    calls: list[tuple[int, int]] = []

    class Counter:
        def open(self, run: object) -> None:
            calls.clear()

        def close(self) -> None:
            pass

    ctx.resources["counter"] = Counter()

    def tick(point: dict[str, int], x: torch.Tensor) -> torch.Tensor:
        calls.append((point["i"], point["t"]))
        return x + len(calls)

    (y,) = udf(ctx, tick, [ctx.symval(b, torch.float64)], (b, i, t), [("out", (), torch.float64)],
               batched=(b,), resource="counter", side_effect=True)
    last = y[0, 1, 2].named("last")  # demanded first by nothing but the roots
    got = ctx.compile(B=3, I=2, T=3, outputs=[("y", y), ("last", last)], optimize=False).interpret()
    assert calls == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2)]
    assert got.outputs["y"][:, 1, 2].tolist() == [6.0, 7.0, 8.0]


def test_logger_records_every_point() -> None:
    ctx = ctx2()
    i, t = ctx.dims
    _, T = ctx.bounds
    x = ctx.symval(i * 10 + t, torch.float64)
    log(ctx, (i,), total=x[i, 0:T].sum())
    logs = ctx.compile(I=3, T=2, optimize=False).interpret().logs
    assert logs == [{"i": 0, "total": 1.0}, {"i": 1, "total": 21.0}, {"i": 2, "total": 41.0}]


# -- bad input --------------------------------------------------------------------------------------------
def test_index_outside_domain_names_tensor_and_index() -> None:
    ctx = ctx2()
    i, t = ctx.dims
    r = ctx.placeholder((), domain=(i, t), name="reward")
    r[True] = ctx.symval(t, torch.float64)
    ahead = (r[i, t + 1] * 2.0).named("ahead")
    with pytest.raises(IndexOutOfDomain, match=r"reward\[i, t\+1\] is read at t=2.*t = 3, outside the "
                                               r"domain of "
                       r"reward \(t in \[0, 3\)\)"):
        ctx.compile(I=1, T=3, outputs=[ahead], optimize=False)


def test_recursion_without_base_case_names_tensor_and_index() -> None:
    ctx = ctx2()
    i, t = ctx.dims
    x = ctx.placeholder((), domain=(i, t), name="acc")
    x[True] = x[i, t - 1] + 1.0
    with pytest.raises(NoBaseCase, match=r"recursive definition of acc has no base case: acc\[i, t-1\]"):
        ctx.compile(I=1, T=3, outputs=[x])
    ctx2_ = ctx2()
    i, t = ctx2_.dims
    z = ctx2_.placeholder((), domain=(i, t), name="z")
    z[True] = z * 2.0  # needs itself at the same point
    with pytest.raises(NoBaseCase, match="z"):
        ctx2_.compile(I=1, T=3, outputs=[z])


def test_shape_mismatch_names_both_tensors() -> None:
    ctx = ctx2()
    i, t = ctx.dims
    obs = ctx.placeholder((4,), domain=(i, t), name="obs")
    with pytest.raises(ShapeMismatch, match=r"cannot assign .* of shape \(3,\) to obs\[i, 0\], whose shape "
                                            r"is \(4,\)"):
        obs[i, 0] = ctx.const(torch.zeros(3))
    w = ctx.const(torch.zeros(5, 2)).named("w")
    with pytest.raises(ShapeMismatch, match=r"matmul\(obs \(4,\), w \(5, 2\)\).*inner sizes 4 and 5"):
        obs @ w


def test_missing_bound_names_tensor_and_index() -> None:
    ctx = Context("i t k", dtype=torch.float64)
    i, t, _ = ctx.dims
    _, T, K = ctx.bounds
    x = ctx.placeholder((), domain=(i, t), name="x")
    x[True] = ctx.symval(t, torch.float64)
    y = x[i, smin(t + K, T - 1)].named("lookahead")
    with pytest.raises(MissingBound, match=r"bound T of t has no value; pass T=\.\.\. to compile\(\)"):
        ctx.compile(I=2, outputs=[y])
    with pytest.raises(MissingBound, match=r"reads x\[i, min\(t\+K, T-1\)\], but bound K has no value"):
        ctx.compile(I=2, T=3, outputs=[y])
    with pytest.raises(MissingBound, match="not a bound"):
        ctx.compile(I=2, T=3, K=1, Q=4, outputs=[y])
    got = ctx.compile(I=1, T=3, K=1, outputs=[y]).interpret().outputs["lookahead"]
    assert got.tolist() == [[1.0, 2.0, 2.0]]


def test_undefined_placeholder_and_wrong_targets() -> None:
    ctx = ctx2()
    i, t = ctx.dims
    ctx.placeholder((), domain=(i, t), name="never")
    with pytest.raises(RecurrentError, match="placeholder never is never defined"):
        ctx.compile(I=1, T=2)
    x = ctx.symval(t, torch.float64)
    with pytest.raises(RecurrentError, match="not a placeholder"):
        x[t == 0] = 1.0
    y = ctx.placeholder((), domain=(i, t), name="y")
    with pytest.raises(RecurrentError, match="must be t, t plus or minus a constant"):
        y[i, 2 * t] = 1.0
