"""Memory: learning behind acting keeps memory flat in the episode length; a memory budget picks it (or keeps
blocks on disk); every plan computes what the interpreter computes."""

from __future__ import annotations

import ppo
import pytest
import reinforce
import torch
from recurrent_programs import check_against_oracle

from reflow.recurrent.schedule import Accumulate, Loop, Run


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
