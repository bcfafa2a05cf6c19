"""make_vec against gymnasium's own SyncVectorEnv + RecordEpisodeStatistics, step by step, bit for bit."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.vector import AutoresetMode

from reflow.errors import EnvError
from reflow.rl import make_vec


def reference(env_id: str, n: int, mode: AutoresetMode) -> gym.vector.VectorEnv:
    env = gym.vector.SyncVectorEnv([lambda: gym.make(env_id) for _ in range(n)], autoreset_mode=mode)
    return gym.wrappers.vector.RecordEpisodeStatistics(env)


def assert_same_run(ours: gym.vector.VectorEnv, ref: gym.vector.VectorEnv, steps: int, seed: int) -> None:
    o1, _ = ours.reset(seed=seed)
    o2, _ = ref.reset(seed=seed)
    np.testing.assert_array_equal(o1, o2)
    rng = np.random.default_rng(seed)
    for t in range(steps):
        actions = np.stack([ref.single_action_space.sample() for _ in range(ref.num_envs)]) if t % 7 else \
            rng.integers(0, 2, ref.num_envs)
        r1, r2 = ours.step(actions), ref.step(actions)
        for a, b in zip(r1[:4], r2[:4], strict=True):
            np.testing.assert_array_equal(a, b, err_msg=f"step {t}")
        assert ours.observation_space.contains(r1[0])
        i1, i2 = r1[4], r2[4]
        assert ("episode" in i1) == ("episode" in i2), f"step {t}"
        if "episode" in i2:
            np.testing.assert_array_equal(i1["_episode"], i2["_episode"])
            for key in ("r", "l"):
                np.testing.assert_array_equal(i1["episode"][key], i2["episode"][key])
        if "final_obs" in i2:
            for k in np.flatnonzero(i2["_final_obs"]):
                np.testing.assert_array_equal(i1["final_obs"][k], i2["final_obs"][k])


@pytest.mark.parametrize("mode", [AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP])
@pytest.mark.parametrize("num_workers", [1, 3])
def test_matches_gymnasium_sync_vector_env(mode: AutoresetMode, num_workers: int, no_leaks: None) -> None:
    ref = reference("CartPole-v1", 7, mode)
    with make_vec("CartPole-v1", 7, num_workers=num_workers, fit_workers=False, autoreset_mode=mode) as ours:
        assert ours.metadata["autoreset_mode"] == mode
        assert ours.observation_space == ref.observation_space
        assert ours.action_space == ref.action_space
        ref.action_space.seed(0)
        assert_same_run(ours, ref, steps=250, seed=11)
        assert list(ours.return_queue) == list(ref.return_queue)  # type: ignore[attr-defined]
        assert list(ours.length_queue) == list(ref.length_queue)  # type: ignore[attr-defined]
        assert ours.episode_count == ref.episode_count > 0  # type: ignore[attr-defined]


def run_trajectory(num_workers: int, seed: int) -> list[np.ndarray[Any, Any]]:
    out = []
    with make_vec("CartPole-v1", 6, num_workers=num_workers, fit_workers=False, seed=seed) as env:
        obs, _ = env.reset()  # the first reset uses make_vec's seed
        out.append(obs)
        for t in range(120):
            obs, rew, term, trunc, _ = env.step(np.arange(6) % 2 ^ (t % 3 == 0))
            out += [obs, rew, term, trunc]
    return out


def test_bit_identical_for_any_worker_count_and_rerun(no_leaks: None) -> None:
    base = run_trajectory(1, seed=3)
    for result in (run_trajectory(2, seed=3), run_trajectory(3, seed=3), run_trajectory(2, seed=3)):
        assert len(result) == len(base)
        for a, b in zip(base, result, strict=True):
            assert a.dtype == b.dtype and a.tobytes() == b.tobytes()
    other = run_trajectory(1, seed=4)
    assert base[0].tobytes() != other[0].tobytes()


def test_seed_i_is_seed_plus_i() -> None:
    with make_vec("CartPole-v1", 3, seed=10) as env:
        obs, _ = env.reset()
    for i in range(3):
        single = gym.make("CartPole-v1")
        np.testing.assert_array_equal(obs[i], single.reset(seed=10 + i)[0])


def test_disabled_autoreset_and_reset_mask(no_leaks: None) -> None:
    with make_vec("CartPole-v1", 4, num_workers=2, fit_workers=False,
                  autoreset_mode=AutoresetMode.DISABLED) as env:
        obs0, _ = env.reset(seed=[1, 2, 3, 4])
        obs1, *_ = env.step(np.zeros(4, dtype=np.int64))
        mask = np.array([True, False, False, True])
        obs2, _ = env.reset(seed=[1, None, None, 4], options={"reset_mask": mask})
        np.testing.assert_array_equal(obs2[mask], obs0[mask])
        np.testing.assert_array_equal(obs2[~mask], obs1[~mask])


def test_returned_obs_is_a_copy_by_default() -> None:
    with make_vec("CartPole-v1", 2) as env:
        obs, _ = env.reset()
        before = obs.copy()
        env.step(np.array([0, 1]))
        np.testing.assert_array_equal(obs, before)


def test_held_batches_stay_intact_and_dropped_ones_are_reused(no_leaks: None) -> None:
    """Batches are handed out without a copy, so a buffer may be refilled only once nobody holds it."""
    ref = gym.vector.SyncVectorEnv([lambda: gym.make("CartPole-v1") for _ in range(6)])
    with make_vec("CartPole-v1", 6, num_workers=3, fit_workers=False, seed=5) as env:
        buffers = env.bank.obs_buffers

        def shared(obs: np.ndarray[Any, Any]) -> bool:
            return any(np.shares_memory(obs, b) for b in buffers)

        held = [env.reset()[0]]
        expected = [ref.reset(seed=5)[0]]
        for t in range(12):
            actions = np.arange(6) % 2 ^ (t % 2)
            obs = env.step(actions)[0]
            expected.append(ref.step(actions)[0])
            # Buffers that are held are never refilled: with all of them held, a batch is a private copy.
            assert shared(obs) == (t == 0)
            held.append(obs[1:] if t % 2 else obs)  # a view of a batch holds it too
        for t, (a, b) in enumerate(zip(held, expected, strict=True)):
            np.testing.assert_array_equal(a, b[1:] if t % 2 == 0 and t else b, err_msg=f"batch {t}")
        held.clear()
        first = env.step(np.zeros(6, np.int64))[0]
        assert shared(first)
        again = env.step(np.zeros(6, np.int64))[0]
        assert shared(again) and not np.shares_memory(first, again)
        kept = again.copy()
        tensor = torch.from_numpy(first)  # a tensor of a batch holds it like a view does
        del first
        third = env.step(np.zeros(6, np.int64))[0]
        assert not shared(third)  # both buffers held (by ``tensor`` and ``again``): a copy
        del tensor, third
        fourth = env.step(np.zeros(6, np.int64))[0]
        assert shared(fourth) and not np.shares_memory(fourth, again)
    np.testing.assert_array_equal(again, kept)  # a batch outlives the closed bank (still mapped)
    ref.close()


def test_bad_arguments() -> None:
    with pytest.raises(EnvError, match="num_workers"):
        make_vec("CartPole-v1", 2, num_workers=3, fit_workers=False)
    with pytest.raises(EnvError, match="num_envs"):
        make_vec("CartPole-v1", 0)


def test_gymnasium_vector_wrappers_run_on_it_unchanged(no_leaks: None) -> None:
    """Existing training code wraps vector envs; gymnasium's own wrappers must see no difference."""
    def wrapped(env: gym.vector.VectorEnv) -> gym.vector.VectorEnv:
        env = gym.wrappers.vector.NormalizeObservation(env)
        env = gym.wrappers.vector.ClipReward(env, min_reward=-0.5, max_reward=0.5)
        return gym.wrappers.vector.TransformObservation(env, lambda o: o * 2.0, env.observation_space)

    ref = wrapped(gym.vector.SyncVectorEnv([lambda: gym.make("CartPole-v1") for _ in range(4)]))
    with make_vec("CartPole-v1", 4, num_workers=2, fit_workers=False) as bank:
        ours = wrapped(bank)
        np.testing.assert_array_equal(ours.reset(seed=3)[0], ref.reset(seed=3)[0])
        for t in range(60):
            actions = np.array([t % 2, 1, 0, (t // 3) % 2])
            for a, b in zip(ours.step(actions)[:4], ref.step(actions)[:4], strict=True):
                np.testing.assert_array_equal(a, b, err_msg=f"step {t}")


@pytest.mark.parametrize("mode", [AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP])
def test_bank_episode_arrays_hold_counts_only_on_the_step_that_ends_the_episode(
        mode: AutoresetMode, no_leaks: None) -> None:
    """The slices leave episode counts in shared arrays, zero except where an episode just ended (readers
    take them as they are), and a ``done`` flag per env; the oracle counts steps and rewards by hand."""
    n = 5
    with make_vec("CartPole-v1", n, num_workers=2, fit_workers=False, autoreset_mode=mode) as env:
        a = env.bank.arrays
        env.reset(seed=3)
        returns, lengths = np.zeros(n), np.zeros(n, np.int64)
        restarting = np.zeros(n, bool)  # NEXT_STEP: this step resets the env instead of stepping it
        ended_total = 0
        for t in range(120):
            _, rew, term, trunc, infos = env.step(np.arange(n) % 2 ^ (t % 3 == 0))
            done = term | trunc
            np.testing.assert_array_equal(a["done"], done, err_msg=f"step {t}")
            returns = np.where(restarting, 0.0, returns + rew)
            lengths = np.where(restarting, 0, lengths + 1)
            where = f"step {t}"
            np.testing.assert_array_equal(a["episode_return"], np.where(done, returns, 0.0), err_msg=where)
            np.testing.assert_array_equal(a["episode_length"], np.where(done, lengths, 0), err_msg=where)
            assert ((a["episode_time"] > 0) == done).all(), f"step {t}"
            assert ("episode" in infos) == done.any()
            ended_total += int(done.sum())
            if mode == AutoresetMode.NEXT_STEP:
                restarting = done
            else:
                returns, lengths = np.where(done, 0.0, returns), np.where(done, 0, lengths)
        assert ended_total >= 10 and env.episode_count == ended_total
