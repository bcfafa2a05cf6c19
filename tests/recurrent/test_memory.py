"""Memory: learning behind acting keeps memory flat in the episode length; a memory budget picks it (or keeps
blocks on disk); every plan computes what the interpreter computes."""

from __future__ import annotations

import ppo
import pytest
import reinforce
import torch
from recurrent_programs import check_against_oracle

from reflow.recurrent import Context
from reflow.recurrent.ops import OPS
from reflow.recurrent.optim import Adam
from reflow.recurrent.schedule import Accumulate, Loop, Run
from reflow.recurrent.synthetic import ENV_ID


@pytest.fixture(autouse=True)
def one_thread() -> None:
    torch.set_num_threads(1)


@pytest.mark.parametrize("n", [1, 3])
def test_n_step_learning_runs_behind_acting_and_matches_the_interpreter(n: int) -> None:
    prog, _ = check_against_oracle(reinforce.build(n=n, hidden=8), {"B": 2, "T": 9, "I": 2}, {}, stream=True)
    (i_loop,) = [it for it in prog.schedule.items if isinstance(it, Loop)]
    (t_loop,) = [it for it in i_loop.body if isinstance(it, Loop)]
    runs = [it for it in t_loop.body if isinstance(it, (Run, Accumulate))]
    assert max(it.skew for it in runs) == n - 1  # the learner is n - 1 steps behind acting
    assert sum(isinstance(it, Accumulate) for it in runs) >= 3  # loss and gradients add up step by step


def test_streamed_memory_is_flat_in_episode_length() -> None:
    peaks = {}
    for T in (40, 160):
        for stream in (False, True):
            prog = reinforce.build(n=4, hidden=16).compile(B=4, T=T, I=1, stream=stream)
            peaks[(T, stream)] = prog.run().stats["peak_tracked_bytes"]
    assert peaks[(160, False)] > 3 * peaks[(40, False)]  # a whole episode is kept for the learner
    assert peaks[(160, True)] == peaks[(40, True)] < peaks[(40, False)]


def test_memory_budget_streams_or_offloads_and_stays_correct() -> None:
    prog = reinforce.build(n=4, hidden=8).compile(B=4, T=64, I=1)
    budget = prog.memory_estimate // 4
    streamed, _ = check_against_oracle(reinforce.build(n=4, hidden=8), {"B": 4, "T": 64, "I": 1}, {},
                                       memory_budget=budget)
    assert streamed.stream_dim == "t" and streamed.memory_estimate <= budget
    # PPO's advantages need the whole rollout, so its learner cannot run behind acting: blocks go to disk
    offloaded, _ = check_against_oracle(ppo.build(hidden=8), {"B": 2, "T": 6, "K": 2, "I": 2}, {},
                                        memory_budget=1000)
    assert offloaded.offload and offloaded.memory_estimate > 1000
    assert "on disk while their loop runs" in offloaded.explain()


def test_an_episode_of_images_is_kept_once() -> None:
    """Monte-Carlo returns need the whole episode before the learner runs, so its observations are kept as a
    block: one buffer filled as the steps come (not the steps plus their stack); the interpreter agrees on
    every log and on the parameters after three Adam steps (so on the gradients)."""
    B, T, obs = 2, 24, (3, 16, 16)
    prog, _ = check_against_oracle(reinforce.build(env_id=ENV_ID, hidden=8, obs_shape=obs),
                                   {"B": B, "T": T, "I": 3}, {})
    block = B * T * 3 * 16 * 16 * 4  # float32 observations, as the env makes them
    peak = prog.run().stats["peak_tracked_bytes"]
    assert block <= peak < 1.25 * block, (peak, block)  # stacking after the loop held 2.3x the block


def test_a_parameter_is_kept_once_across_iterations() -> None:
    """w[i] reads w[i-1]: a ring of two slots, but the old value goes after its last reader, before w[i] is
    made, so only one iteration's value is held (the optimizer state of a large first layer, three times)."""
    ctx = Context("i", dtype=torch.float64)
    (i,) = ctx.dims
    n = 10_000
    w = ctx.param(torch.linspace(-1.0, 1.0, n, dtype=torch.float64), (i,), "w")
    ((w - 3.0) * (w - 3.0)).sum().backward()
    Adam([w], lr=0.1).step()
    prog, _ = check_against_oracle(ctx, {"I": 4}, {})
    peak = prog.run().stats["peak_tracked_bytes"]
    assert 3 * n * 8 <= peak < 4 * n * 8, peak  # w, m and v once each (twice each before)


def test_tensordot_over_a_block_kept_in_another_order_matches_torch() -> None:
    """The learner's weight gradient contracts a block read as (b, t) but kept as (t, b): the kernel contracts
    in memory order (no copy of the block) and must still give torch's result."""
    gen = torch.Generator().manual_seed(0)
    kept = torch.randn(5, 3, 7, generator=gen)  # (t, b, features)
    a = kept.permute(1, 0, 2)  # read as (b, t, features): not contiguous
    g = torch.randn(3, 5, 4, generator=gen)
    got = OPS["tensordot"].kernel({"n": 2}, 0, None, a, g)
    assert torch.allclose(got, torch.tensordot(a, g, dims=([0, 1], [0, 1])), atol=1e-6)
    batched = OPS["tensordot"].kernel({"n": 2}, 1, None, torch.stack([a, 2 * a]), torch.stack([g, g]))
    assert torch.allclose(batched[1], 2 * got, atol=1e-5)
