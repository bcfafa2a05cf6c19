"""The algorithms in examples/recurrent: each compiles to the interpreter's results, and each learns
CartPole at a reduced scale (the full-scale runs are in benchmarks/recurrent_rl.py)."""

from __future__ import annotations

from pathlib import Path

import dqn
import ppo
import pytest
import reinforce
import torch
from recurrent_programs import EXAMPLES, check_against_oracle


@pytest.fixture(autouse=True)
def one_thread() -> None:
    torch.set_num_threads(1)


@pytest.mark.parametrize("module", [ppo, dqn])
def test_compiled_equals_interpreted(module: object) -> None:
    ctx = module.build(hidden=8)  # type: ignore[attr-defined]
    check_against_oracle(ctx, {"B": 2, "T": 5, "K": 2, "I": 2}, {})


def test_each_algorithm_reads_in_under_80_lines() -> None:
    for name in ("reinforce", "ppo", "dqn"):
        lines = (EXAMPLES / f"{name}.py").read_text().splitlines()
        assert len(lines) < 80, (name, len(lines))
        assert Path(EXAMPLES / f"{name}.py").exists()


def _returns(logs: list[dict[str, float]]) -> list[float]:
    return [r["episode_return"] for r in logs]


def test_ppo_learns_cartpole() -> None:
    """Random play lasts ~20 steps; PPO passes a mean return of 150 within 30 iterations."""
    logs = ppo.build().compile(B=8, T=128, K=8, I=30).run().logs
    ret = _returns(logs)
    assert ret[0] < 40 and max(sum(ret[k:k + 3]) / 3 for k in range(len(ret) - 2)) > 150, ret


def test_reinforce_and_dqn_learn() -> None:
    ret = _returns(reinforce.build(n=8, lr=2e-2).compile(B=8, T=200, I=12).run().logs)
    assert ret[0] < 40 and max(ret[-4:]) > 2 * ret[0], ret
    ret = _returns(dqn.build(lr=1e-3).compile(B=8, T=200, K=4, I=8).run().logs)
    assert ret[0] < 40 and max(ret[-4:]) > 2 * ret[0], ret
