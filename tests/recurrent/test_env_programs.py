"""Programs that step real env banks (reflow.rl's ``make_vec``): the compiled run equals the interpreter's,
and the bank's state is used in the right order (reset, steps, next reset)."""

from __future__ import annotations

import pytest
import torch
from recurrent_programs import check_against_oracle
from reinforce import build


@pytest.mark.parametrize("n", [None, 3])
def test_reinforce_compiled_equals_interpreted(n: int | None) -> None:
    ctx = build(n=n, hidden=8)
    prog, _ = check_against_oracle(ctx, {"B": 2, "T": 9, "I": 3}, {})
    assert prog.schedule is not None
    logs = prog.run().logs
    assert [r["i"] for r in logs] == [0, 1, 2]
    assert all(1.0 <= r["episode_return"] <= 9.0 for r in logs)


def test_episodes_that_end_early_are_masked() -> None:
    """With T longer than a random policy's CartPole episodes, every episode ends inside the iteration: the
    mask is 1 up to and including the last step and 0 after it, and only those steps pay reward."""
    ctx = build(hidden=8, lr=0.0)
    outs = {"alive": ctx.find("alive"), "reward": ctx.find("reward")}
    _, got = check_against_oracle(ctx, {"B": 4, "T": 60, "I": 1}, outs)
    alive, reward = got["alive"][:, 0], got["reward"][:, 0]
    lengths = alive.sum(1)
    assert (lengths < 60).all() and (lengths >= 8).all()
    for k in range(4):
        n = int(lengths[k])
        assert alive[k, :n].eq(1).all() and alive[k, n:].eq(0).all()
    assert torch.equal(reward, alive)  # CartPole pays 1 per step of the episode, nothing after it
