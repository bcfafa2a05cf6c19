"""The asynchronous env bank (``make_async``): EnvPool's send / recv over slices that step independently.

The oracle is the lock-step bank: given the same actions per env, every env must go through the same
observations, rewards and flags, whatever comes back together and whatever the number of workers.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from reflow.errors import EnvError, WorkerCrashed
from reflow.rl import make_async, make_vec
from reflow.rl.envs import AsyncBankEnv, EnvSpec
from reflow.rl.envs.async_env import collect
from reflow.rl.envs.bank import EnvBank
from reflow.rl.envs.worker import RESET, STEP

CRASH = "rl_faulty_envs:reflow-test/Crash-v0"
N, STEPS = 8, 40


def episodes(info: dict[str, Any], ids: Any) -> list[tuple[int, float, int]]:
    """(env, return, length) of the episodes a step's ``info`` reports; checks the counts of the other
    envs are zero."""
    if "episode" not in info:
        return []
    mask, ep = info["_episode"], info["episode"]
    assert not ep["r"][~mask].any() and not ep["l"][~mask].any() and not ep["t"][~mask].any()
    return [(int(i), float(r), int(n)) for i, r, n in zip(np.asarray(ids)[mask], ep["r"][mask], ep["l"][mask],
                                                          strict=True)]


def lockstep(actions: np.ndarray[Any, Any], seed: int) -> dict[str, Any]:
    """Per env and step: obs, reward, termination, truncation of a lock-step run (the first obs: reset);
    and the episodes that ended, sorted."""
    with make_vec("CartPole-v1", N, num_workers=2, seed=seed) as env:
        obs, _ = env.reset()
        out: dict[str, list[Any]] = {"obs": [obs], "rew": [np.zeros(N)], "term": [np.zeros(N, bool)],
                                     "trunc": [np.zeros(N, bool)]}
        ended = []
        for row in actions:
            obs, rew, term, trunc, info = env.step(row)
            for k, v in zip(out, (obs, rew, term, trunc), strict=True):
                out[k].append(v)
            ended += episodes(info, np.arange(N))
        stacked = {k: np.stack(v, axis=1) for k, v in out.items()}  # (env, step, ...)
        return {**stacked, "episodes": sorted(ended)}


def asynchronous(env: AsyncBankEnv, actions: np.ndarray[Any, Any]) -> dict[str, Any]:
    """The same, stepping ``env`` with send / recv until every env made ``len(actions)`` steps."""
    env.async_reset()
    seen: dict[str, list[list[Any]]] = {k: [[] for _ in range(N)] for k in ("obs", "rew", "term", "trunc")}
    steps = len(actions)
    ended = []
    while min(len(s) for s in seen["obs"]) <= steps:
        obs, rew, term, trunc, info = env.recv()
        ids = info["env_id"]
        made = [len(seen["obs"][i]) for i in ids]  # steps each env had made before these results
        for j, i in enumerate(ids):
            for k, v in zip(seen, (obs, rew, term, trunc), strict=True):
                seen[k][i].append(v[j])
        step_of = dict(zip(ids.tolist(), made, strict=True))  # these results end step ``made`` of each env
        ended += [e for e in episodes(info, ids) if step_of[e[0]] <= steps]
        env.send([actions[min(t, steps - 1), i] for t, i in zip(made, ids, strict=True)], ids)
    return {**{k: np.array([s[:steps + 1] for s in v]) for k, v in seen.items()}, "episodes": sorted(ended)}


@pytest.mark.parametrize(("workers", "batch", "per_worker"),
                         [(1, None, 1), (3, None, 1), (4, 4, 1), (4, 6, 1), (1, None, 3), (2, 3, 2)])
def test_each_env_goes_where_the_lockstep_bank_takes_it(workers: int, batch: int | None, per_worker: int,
                                                        no_leaks: None) -> None:
    actions = np.random.default_rng(1).integers(0, 2, (STEPS, N))
    expected = lockstep(actions, seed=5)
    with make_async("CartPole-v1", N, num_workers=workers, seed=5, batch_size=batch,
                    slices_per_worker=per_worker) as env:
        assert len(env.slices) == workers * per_worker
        got = asynchronous(env, actions)
        assert env.episode_count > 0  # CartPole's random episodes end within 40 steps
    assert got.pop("episodes") == expected.pop("episodes")  # the same episodes, returns and lengths
    for k in expected:
        np.testing.assert_array_equal(got[k], expected[k], err_msg=k)


def test_recv_returns_fewer_than_a_batch_only_when_nothing_else_steps(no_leaks: None) -> None:
    with make_async("CartPole-v1", 6, num_workers=3, batch_size=4) as env:
        env.async_reset()
        first = env.recv()[4]["env_id"]  # two slices: 4 envs
        rest = env.recv()[4]["env_id"]  # the third: only 2 envs, and the others wait for actions
        assert len(first) == 4 and len(rest) == 2
        assert sorted([*first, *rest]) == list(range(6))


def test_recv_returns_whole_ready_slices_as_copies(no_leaks: None) -> None:
    with make_async("CartPole-v1", 9, num_workers=3, batch_size=4) as env:
        assert [(r.start, r.stop) for r in env.slices] == [(0, 3), (3, 6), (6, 9)]
        env.async_reset()
        obs, _, _, _, info = env.recv()
        ids = info["env_id"]
        assert len(ids) == 6 and obs.shape == (6, 4)  # two whole slices: at least 4 envs
        assert {tuple(ids[:3]), tuple(ids[3:])} <= {tuple(r) for r in env.slices}
        kept = obs.copy()
        env.send(np.zeros(6, np.int64), ids)
        env.recv()
        np.testing.assert_array_equal(obs, kept)  # stepping does not touch what recv returned


def test_a_slow_slice_does_not_hold_the_others_back(no_leaks: None) -> None:
    specs = [EnvSpec(CRASH, {"delay": 1.0 if i >= 4 else 0.0}) for i in range(6)]
    with AsyncBankEnv(specs, num_workers=3) as env:  # slices 0..1, 2..3, 4..5; the last steps slowly
        env.async_reset()
        returns = [0, 0, 0]  # per slice: its reset, then one per step
        give_up = time.monotonic() + 20.0
        while returns[2] < 2 and time.monotonic() < give_up:  # until the slow slice's first step is back
            ids = env.recv()[4]["env_id"]
            returns[int(ids[0]) // 2] += 1
            env.send(np.zeros(len(ids), np.int64), ids)
        assert returns[2] == 2 and min(returns[:2]) >= 5, returns  # the fast ones went on meanwhile


def test_slices_that_do_not_follow_one_another_come_and_go_together(no_leaks: None) -> None:
    # the middle slice is slow, so a batch of two slices is slices 0 and 2: rows 0, 1, 4, 5
    specs = [EnvSpec(CRASH, {"delay": 1.0 if i in (2, 3) else 0.0}) for i in range(6)]
    with AsyncBankEnv(specs, num_workers=3, batch_size=4) as env:
        env.async_reset()
        collect(env)  # the resets
        env.send(np.zeros(6, np.int64), np.arange(6))
        for t in (1.0, 2.0):  # two steps of the fast slices while the slow one sleeps through its first
            obs, rew, _, _, info = env.recv()
            assert sorted(info["env_id"].tolist()) == [0, 1, 4, 5]
            assert (obs == t).all() and (rew == 1.0).all()  # the fast envs, one step further each time
            env.send(np.zeros(4, np.int64), info["env_id"])


def test_bad_sends_say_what_is_wrong(no_leaks: None) -> None:
    with make_async("CartPole-v1", 6, num_workers=3) as env:
        with pytest.raises(EnvError, match="no env is stepping or ready"):
            env.recv()
        env.async_reset()
        ids = env.recv()[4]["env_id"]
        with pytest.raises(EnvError, match="3 actions for 2 envs"):
            env.send([0, 0, 0], ids)
        with pytest.raises(EnvError, match=r"expected whole: pass info\['env_id'\]"):
            env.send([0], ids[:1])
        with pytest.raises(EnvError, match=r"env id 9; this bank has envs 0\.\.5"):
            env.send([0, 0], [9, 10])
        other = [i for i in range(6) if i not in ids][:2]
        with pytest.raises(EnvError, match="not waiting for actions"):
            env.send([0, 0], other)
        env.send([0, 0], ids)
        with pytest.raises(EnvError, match="not waiting for actions"):
            env.send([0, 0], ids)
    with pytest.raises(EnvError, match="batch_size must be between 1 and num_envs=4"):
        make_async("CartPole-v1", 4, num_workers=2, batch_size=5)


def test_async_reset_waits_for_stepping_slices_and_starts_over(no_leaks: None) -> None:
    with make_async("CartPole-v1", 4, num_workers=2, seed=7, batch_size=4) as env:
        env.async_reset()
        first, *_, info = env.recv()
        env.send(np.ones(4, np.int64), info["env_id"])  # in flight
        first = first[np.argsort(info["env_id"])]  # slices come back in the order they finish
        env.async_reset(seed=7)
        again, rew, term, trunc, info = env.recv()
        np.testing.assert_array_equal(again[np.argsort(info["env_id"])], first)
        assert not rew.any() and not term.any() and not trunc.any()


def test_a_worker_steps_each_of_its_slices_on_its_own_command(no_leaks: None) -> None:
    """With two slices per worker, a worker steps exactly the slices it was sent, one command each."""
    with EnvBank([EnvSpec("CartPole-v1", {})] * 8, num_workers=2, caller_steps=False,
                 slices_per_worker=2) as bank:
        assert bank.bounds == [0, 2, 4, 6, 8]
        assert [w.slices for w in bank.workers] == [[0, 1], [2, 3]]
        bank.start(RESET, range(4))
        done: list[int] = []
        while bank.running:
            done += bank.finished()
        assert sorted(done) == [0, 1, 2, 3]
        before = bank.obs_buffers[0].copy()
        bank.arrays["actions"][:] = 1
        bank.start(STEP, [1])  # the second slice of worker 0 only
        assert bank.finished() == [1] and not bank.running
        after = bank.obs_buffers[0]
        assert (after[2:4] != before[2:4]).all(axis=1).all()  # envs 2 and 3 moved
        np.testing.assert_array_equal(after[[0, 1, 4, 5, 6, 7]], before[[0, 1, 4, 5, 6, 7]])
        bank.start(STEP, [0, 3])  # one slice of each worker
        done = []
        while bank.running:
            done += bank.finished()
        assert sorted(done) == [0, 3]


def test_slices_per_worker_needs_a_caller_that_steps_nothing_and_enough_envs() -> None:
    with pytest.raises(EnvError, match="slices_per_worker must be 1, or more when the caller steps no slice"):
        EnvBank([EnvSpec("CartPole-v1", {})] * 4, num_workers=2, slices_per_worker=2)
    with pytest.raises(EnvError, match=r"2 workers x 3 slices each need at least 6 envs, got 4"):
        make_async("CartPole-v1", 4, num_workers=2, slices_per_worker=3)


def raises_at_the_third_recv(env: AsyncBankEnv, match: str) -> None:
    """Step every env twice (a recv of all of them, a send), then the env that raises surfaces at recv."""
    env.async_reset()
    for _ in range(2):
        ids = env.recv()[4]["env_id"]
        env.send(np.zeros(env.num_envs, np.int64), ids)
    with pytest.raises(EnvError, match=match):
        env.recv()


def test_env_errors_and_killed_workers_surface_at_recv(no_leaks: None) -> None:
    specs = [EnvSpec(CRASH, {"crash_step": 2 if i == 3 else -1}) for i in range(4)]
    with AsyncBankEnv(specs, num_workers=2, batch_size=4) as env:
        raises_at_the_third_recv(env, r"env 3\b.*boom at step 2")
    with make_async("CartPole-v1", 4, num_workers=2, batch_size=4) as env:
        env.async_reset()
        ids = env.recv()[4]["env_id"]
        victim = env.bank.workers[0].proc
        assert victim is not None and victim.pid is not None
        os.kill(victim.pid, signal.SIGKILL)
        victim.join(5.0)
        env.send(np.zeros(4, np.int64), ids)
        with pytest.raises(WorkerCrashed, match=r"worker 0 \(envs 0\.\.1 of 'CartPole-v1'\) died"):
            env.recv()
    specs = [EnvSpec(CRASH, {"crash_step": 2 if i == 6 else -1}) for i in range(8)]
    with AsyncBankEnv(specs, num_workers=2, slices_per_worker=2, batch_size=8) as env:  # env 6: slice 3
        raises_at_the_third_recv(env, r"env 6\b.*stepped by worker 1\) raised .*boom at step 2")


def test_the_guide_example_runs_and_prints_what_the_guide_says(no_leaks: None) -> None:
    text = (Path(__file__).resolve().parents[3] / "docs" / "rl.md").read_text()
    section = text.split("### Asynchronous stepping", 1)[1]
    block = re.findall(r"```python\n(.*?)```", section, re.S)[0]
    out = subprocess.run([sys.executable, "-c", block], capture_output=True, text=True, timeout=120,
                         check=True)
    assert "(8, 4) [4, 4, 4, 4] True" in out.stdout
