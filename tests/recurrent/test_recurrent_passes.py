"""Each pass does what it claims, on programs where it has something to do: dead code goes, duplicates merge,
sums over the rest of a long episode stay exact (no division by powers of gamma), and the memory plan frees
values after their last reader and lets elementwise ops write into dying inputs."""

from __future__ import annotations

import torch
from recurrent_programs import check_against_oracle

from reflow.recurrent import Context
from reflow.recurrent.dgraph import kind
from reflow.recurrent.schedule import Accumulate, Free, Item, Loop, Run

F64 = torch.float64


def _walk(items: list[Item]) -> list[Item]:
    out: list[Item] = []
    for it in items:
        out.append(it)
        if isinstance(it, Loop):
            out += _walk(it.body)
    return out


def test_dead_code_and_duplicates_are_removed() -> None:
    ctx = Context("b t", dtype=F64)
    b, t = ctx.dims
    x = ctx.rand((), (b, t), seed=3, dtype=F64).named("x")
    (x.exp() * 3.0).named("unused")             # read by nothing the program returns
    y = (x.tanh() + x.tanh()).named("y")        # the same op on the same input, built twice
    prog, got = check_against_oracle(ctx, {"B": 2, "T": 4}, {"x": x, "y": y})
    kinds = [kind(n) for n in prog.graph]
    assert "exp" not in kinds and kinds.count("tanh") == 1, kinds
    assert [kind(n) for n in prog.source].count("tanh") == 2
    log = {name: (before, after) for name, before, after in prog.pass_log}
    assert log["duplicates"][1] < log["duplicates"][0]
    assert torch.allclose(got["y"], 2 * got["x"].tanh())


def test_discounted_sum_over_a_long_episode_needs_no_division_by_gamma_powers() -> None:
    """gamma**3000 underflows to 0 in float64: G[t] = sum_k gamma**k r[t + k] computed as a prefix sum
    divided by gamma**t would be inf or nan; the reverse scan multiplies only and matches a plain loop."""
    ctx = Context("b t", dtype=F64)
    b, t = ctx.dims
    _, T = ctx.bounds
    r = ctx.rand((), (b, t), seed=5, dtype=F64).named("r")
    G = r[b, t:T].discounted_sum(0.5).named("G")
    prog = ctx.compile(B=2, T=3000, outputs=[r, G])
    assert "window" in [kind(n) for n in prog.graph]  # a scan kernel, not T reductions of slices
    out = prog.run().outputs
    rew, got = out["r"], out["G"]
    want = torch.zeros_like(rew)
    acc = torch.zeros(rew.shape[0], dtype=F64)
    for s in reversed(range(rew.shape[1])):
        acc = rew[:, s] + 0.5 * acc
        want[:, s] = acc
    assert torch.isfinite(got).all()
    assert torch.allclose(got, want, rtol=1e-12, atol=1e-12)


def test_values_are_freed_after_their_last_reader_and_buffers_are_donated() -> None:
    """In an acting loop a step's temporaries are dropped inside the loop body, right after their last
    reader; an elementwise op reading a temporary nobody else reads writes its result into it."""
    import reinforce

    prog, _ = check_against_oracle(reinforce.build(n=3, hidden=8), {"B": 2, "T": 7, "I": 2}, {})
    items = _walk(prog.schedule.items)
    frees = [it for it in items if isinstance(it, Free)]
    assert frees and all(it.nodes for it in frees)
    runs = [it for it in items if isinstance(it, Run)]
    donated = [it for it in runs if it.donate is not None]
    assert donated, "no elementwise op was given a dying input's buffer"
    # a value is freed only after it is made, and only once
    seen: set[str] = set()
    freed: list[str] = []
    for it in items:
        if isinstance(it, (Run, Accumulate)):
            seen.add(it.node)
        elif isinstance(it, Free):
            assert set(it.nodes) <= seen, set(it.nodes) - seen
            freed += it.nodes
    assert len(freed) == len(set(freed))
