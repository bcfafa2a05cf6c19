"""The compiled program (passes, schedule, generated code) against the reference interpreter."""

from __future__ import annotations

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from recurrent_programs import check_against_oracle, returns_program

from reflow.recurrent import Context, RecurrentTensor
from reflow.recurrent.dgraph import kind
from reflow.recurrent.symbolic import smax, smin

F64 = torch.float64


def test_returns_and_windows_become_scans() -> None:
    ctx, outs = returns_program()
    prog, _ = check_against_oracle(ctx, {"B": 3, "T": 9}, outs)
    kinds = [kind(n) for n in prog.graph]
    assert kinds.count("window") == 4 and "index" in kinds  # the fixed slice 0:T stays a gather
    assert dict((name, after) for name, _, after in prog.pass_log)["incrementalize"] < len(prog.source)


def test_iterations_run_one_at_a_time_with_everything_they_own() -> None:
    """Parameters step over i: the whole iteration (acting loop, learning, logging) sits in one loop."""
    from reinforce import build

    from reflow.recurrent.schedule import Loop

    prog = build(hidden=8).compile(B=2, T=6, I=2)
    top = [it for it in prog.schedule.items if isinstance(it, Loop)]
    assert [lp.dim for lp in top] == ["i"]
    inner = [it for it in top[0].body if isinstance(it, Loop)]
    assert [lp.dim for lp in inner] == ["t"]  # the acting loop; returns and gradients are vectorized


# -- random programs --------------------------------------------------------------------------------------
UNARY = ("tanh", "neg", "sigmoid", "abs")


@st.composite
def programs(draw: st.DrawFn) -> tuple[Context, dict[str, RecurrentTensor]]:
    """Random programs over (b, t): pointwise ops, shifts behind a base case, recurrences, windows of every
    supported kind, fixed slices, and conditional definitions."""
    ctx = Context("b t", dtype=F64)
    b, t = ctx.dims
    B, T = ctx.bounds
    pool: list[RecurrentTensor] = [ctx.rand((), (b, t), seed=draw(st.integers(0, 99)), dtype=F64).named("x0")]
    for k in range(draw(st.integers(2, 7))):
        x = pool[draw(st.integers(0, len(pool) - 1))]
        y = pool[draw(st.integers(0, len(pool) - 1))]
        choice = draw(st.sampled_from(["unary", "binary", "shift", "recur", "window", "cond", "fixed"]))
        if choice == "unary":
            z = getattr(x, draw(st.sampled_from(UNARY)))()
        elif choice == "binary":
            z = draw(st.sampled_from([x + y, x - y, x * y, x * 0.5 + 1.0]))
        elif choice == "shift":
            z = ctx.placeholder((), domain=(b, t), name=f"s{k}")
            z[b, 0] = y
            z[b, t + 1] = x
        elif choice == "recur":
            z = ctx.placeholder((), domain=(b, t), name=f"r{k}")
            z[b, 0] = x
            z[b, t + 1] = (z * draw(st.sampled_from([0.5, -0.9, 1.0])) + y[b, t + 1]).tanh()
        elif choice == "window":
            n = draw(st.integers(1, 3))
            lo, hi = draw(st.sampled_from([(t, T), (t, smin(t + n, T)), (0, t + 1), (smax(0, t - n), t + 1),
                                           (0, t), (t + 1, T)]))
            gamma = draw(st.sampled_from([1.0, 0.9]))
            rev = draw(st.booleans()) and lo is not t
            z = x[b, lo:hi].discounted_sum(gamma, reverse=rev) if gamma != 1.0 else x[b, lo:hi].sum()
        elif choice == "cond":
            z = ctx.placeholder((), domain=(b, t), name=f"c{k}")
            z[draw(st.sampled_from([t == T - 1, t % 2 == 0, t < 2, (t > 0) & (t < T - 1)]))] = x
            z[True] = y
        else:
            z = (x[0:B, t].sum() + x[b, 0:T].mean()).named(f"f{k}")
        pool.append(z.named(f"n{k}") if not isinstance(z, Context) else z)
    return ctx, {f"v{k}": v for k, v in enumerate(pool)}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(programs(), st.integers(1, 3), st.integers(1, 7), st.booleans())
def test_random_programs_match_the_interpreter(prog: tuple[Context, dict[str, RecurrentTensor]], nb: int,
                                               nt: int, stream: bool) -> None:
    """Compiled with every pass, vectorized or streaming along t, a random program computes what the
    interpreter computes."""
    ctx, outs = prog
    check_against_oracle(ctx, {"B": nb, "T": nt}, outs, stream="t" if stream else None)
