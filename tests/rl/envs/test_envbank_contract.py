"""make_vec keeps gymnasium's VectorEnv contract: each item side by side with SyncVectorEnv, same seeds and
actions (gymnasium's own vector tests run against make_vec in gymnasium_tests/)."""

from __future__ import annotations

import functools
import os
import signal
from collections.abc import Iterator
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import data_equivalence
from gymnasium.vector import AutoresetMode, SyncVectorEnv
from gymnasium.wrappers import ClipReward, RecordEpisodeStatistics

from reflow.errors import EnvError, EnvTimeout, WorkerCrashed
from reflow.rl import make_vec
from reflow.rl.envs.vector import BankVectorEnv

CRASH = "rl_faulty_envs:reflow-test/Crash-v0"
LIVES = "rl_faulty_envs:reflow-test/Lives-v0"


@pytest.fixture(scope="module")
def pair() -> Iterator[tuple[BankVectorEnv, SyncVectorEnv]]:
    """One bank (env 0..1 in this process, 2..3 in a worker) beside SyncVectorEnv, shared by the tests that
    leave it usable."""
    ref = SyncVectorEnv([lambda: gym.make("CartPole-v1", render_mode="rgb_array") for _ in range(4)])
    with make_vec("CartPole-v1", 4, num_workers=2, fit_workers=False, render_mode="rgb_array") as ours:
        yield ours, ref
    ref.close()


def assert_same_steps(ours: gym.vector.VectorEnv, ref: gym.vector.VectorEnv, steps: int, seed: int) -> None:
    np.testing.assert_array_equal(ours.reset(seed=seed)[0], ref.reset(seed=seed)[0])
    rng = np.random.default_rng(seed)
    for t in range(steps):
        actions = rng.integers(0, 2, ours.num_envs)
        for a, b in zip(ours.step(actions)[:4], ref.step(actions)[:4], strict=True):
            np.testing.assert_array_equal(a, b, err_msg=f"step {t}")


@pytest.mark.parametrize("bad", [0, np.array([1]), np.array([1, 0, 1, 0, 1]), np.zeros((4, 1), np.int64),
                                 np.full(4, 0.7), [0.0, 1.0, 0.0, 1.0]],
                         ids=["scalar", "one", "five", "column", "floats", "float-list"])
def test_bad_actions_are_refused_as_gymnasium_refuses_them(
        bad: Any, pair: tuple[BankVectorEnv, SyncVectorEnv]) -> None:
    ours, ref = pair
    ref.reset(seed=1)
    with pytest.raises(Exception) as theirs:
        ref.step(bad)
    ours.reset(seed=1)
    with pytest.raises(EnvError) as mine:
        ours.step(bad)
    if type(theirs.value) in (TypeError, ValueError):  # gymnasium's own refusal; else the env's assertion
        assert isinstance(mine.value, type(theirs.value))
    assert_same_steps(ours, ref, steps=20, seed=2)  # nothing was stepped, the bank is still open


def test_attributes_and_calls_reach_envs_in_every_process(pair: tuple[BankVectorEnv, SyncVectorEnv]) -> None:
    ours, ref = pair
    ours.reset(seed=42)
    ref.reset(seed=42)
    assert ours.np_random_seed == ref.np_random_seed == (42, 43, 44, 45)
    ours.reset()
    assert ours.np_random_seed == (42, 43, 44, 45)  # resetting without a seed keeps the seeds
    for env in (ours, ref):
        env.set_attr("gravity", [9.81, 3.72, 8.87, 1.62])
        env.set_attr("length", 0.25)
    assert ours.get_attr("gravity") == ref.get_attr("gravity") == (9.81, 3.72, 8.87, 1.62)
    assert ours.call("get_wrapper_attr", "length") == ref.call("get_wrapper_attr", "length") == (0.25,) * 4
    assert_same_steps(ours, ref, steps=60, seed=3)  # the changed physics, in both
    with pytest.raises(AttributeError, match="no attribute 'nonsense'") as e:
        ours.get_attr("nonsense")
    assert any("env 0" in note for note in e.value.__notes__)
    with pytest.raises(ValueError, match="length equal to the number of environments"):
        ours.set_attr("gravity", [1.0, 2.0])
    assert ours.spec is not None and ours.spec.id == "CartPole-v1" and ours.spec.kwargs["num_envs"] == 4
    assert ours.render_mode == ref.render_mode == "rgb_array"
    assert ours.metadata["render_fps"] == ref.metadata["render_fps"]


def test_render_gives_each_envs_frame(pair: tuple[BankVectorEnv, SyncVectorEnv]) -> None:
    ours, ref = pair
    ours.reset(seed=7)
    ref.reset(seed=7)
    frames, expected = ours.render(), ref.render()
    assert isinstance(frames, tuple) and len(frames) == 4
    for a, b in zip(frames, expected, strict=True):
        assert a.shape == (400, 600, 3)
        np.testing.assert_array_equal(a, b)


def without_time(infos: dict[str, Any]) -> dict[str, Any]:
    """Infos less the episodes' wall-clock times (the one value that differs between runs)."""
    return {k: without_time(v) if isinstance(v, dict) else v for k, v in infos.items() if k != "t"}


@pytest.mark.parametrize("mode", [AutoresetMode.SAME_STEP, AutoresetMode.NEXT_STEP])
def test_constructors_give_syncvectorenvs_infos(mode: AutoresetMode, no_leaks: None) -> None:
    """CleanRL's constructor (RecordEpisodeStatistics first) in worker processes: infos, final_obs and
    final_info as SyncVectorEnv gives them, step by step."""
    def thunk() -> gym.Env[Any, Any]:
        return RecordEpisodeStatistics(gym.make("CartPole-v1"))

    ref = SyncVectorEnv([thunk for _ in range(4)], autoreset_mode=mode)
    with make_vec([thunk for _ in range(4)], num_workers=2, fit_workers=False, autoreset_mode=mode) as ours:
        assert data_equivalence(ours.reset(seed=5), ref.reset(seed=5))
        rng = np.random.default_rng(0)
        finals = episodes = 0
        for t in range(150):
            actions = rng.integers(0, 2, 4)
            mine, theirs = ours.step(actions), ref.step(actions)
            for a, b in zip(mine[:4], theirs[:4], strict=True):
                np.testing.assert_array_equal(a, b, err_msg=f"step {t}")
            assert data_equivalence(without_time(mine[4]), without_time(theirs[4])), f"step {t}"
            finals += "final_info" in theirs[4]
            where = theirs[4].get("final_info", theirs[4])
            episodes += int(where["_episode"].sum()) if "_episode" in where else 0
        assert finals > 3 if mode == AutoresetMode.SAME_STEP else finals == 0
        assert ours.episode_count == episodes > 3  # the bank read them from the constructor's recorder
    ref.close()


def test_wrappers_report_the_games_episodes_not_each_lifes(no_leaks: None) -> None:
    """``wrappers=`` go on top of a RecordEpisodeStatistics placed first: returns and lengths are the game's
    (3 lives, unclipped rewards), as with RecordEpisodeStatistics first in a SyncVectorEnv stack."""
    clip = functools.partial(ClipReward, min_reward=-1.0, max_reward=1.0)

    def thunk() -> gym.Env[Any, Any]:
        from rl_faulty_envs import EpisodicLife
        return clip(EpisodicLife(RecordEpisodeStatistics(gym.make(LIVES))))

    from rl_faulty_envs import EpisodicLife
    ref = SyncVectorEnv([thunk for _ in range(3)])
    with make_vec(LIVES, 3, num_workers=2, fit_workers=False, wrappers=[EpisodicLife, clip]) as ours:
        ours.reset(seed=0)
        ref.reset(seed=0)
        rng = np.random.default_rng(1)
        games = []
        for t in range(80):
            actions = rng.integers(0, 2, 3)
            mine, theirs = ours.step(actions), ref.step(actions)
            for a, b in zip(mine[:4], theirs[:4], strict=True):
                np.testing.assert_array_equal(a, b, err_msg=f"step {t}")
            assert ("episode" in mine[4]) == ("episode" in theirs[4]), f"step {t}"
            if "episode" in theirs[4]:
                done = theirs[4]["_episode"]
                np.testing.assert_array_equal(mine[4]["_episode"], done)
                for key in ("r", "l"):
                    np.testing.assert_array_equal(mine[4]["episode"][key], theirs[4]["episode"][key])
                games += theirs[4]["episode"]["r"][done].tolist()
        assert len(games) >= 3 and min(games) > 3 * 2 * 3  # whole games of unclipped rewards
        assert list(ours.return_queue) == games
    ref.close()


def test_spaces_are_seeded_from_the_seed() -> None:
    def samples(seed: int) -> list[np.ndarray[Any, Any]]:
        with make_vec("CartPole-v1", 4, seed=seed) as env:
            return [env.action_space.sample() for _ in range(5)] + [env.single_action_space.sample()]

    first = samples(3)
    assert all((a == b).all() for a, b in zip(first, samples(3), strict=True))
    assert any((a != b).any() for a, b in zip(first, samples(4), strict=True))


def test_env_keywords_named_like_make_vecs_own_reach_the_env() -> None:
    with make_vec(LIVES, 2, env_id="mine", env_kwargs={"copy": 7}, lives=2, seed=0) as env:
        assert env.get_attr("env_id") == ("mine", "mine")
        assert env.get_attr("copy") == (7, 7)
        assert env.get_attr("start_lives") == (2, 2)
        assert env.copy is True  # make_vec's own copy= kept its default


def test_a_hung_step_times_out_naming_the_env(no_leaks: None) -> None:
    fns = [functools.partial(gym.make, CRASH, hang_step=3 if i == 2 else -1) for i in range(4)]
    env = make_vec(fns, num_workers=2, step_timeout=1.0)
    env.reset(seed=0)
    env.step(np.zeros(4, np.int64))
    env.step(np.zeros(4, np.int64))
    with pytest.raises(EnvTimeout, match=r"env 2 \(.*stepped by worker 1\) did not finish.*step_timeout=1 s"
                       r"(.|\n)*rl_faulty_envs") as e:
        env.step(np.zeros(4, np.int64))
    assert "where it was" in str(e.value)
    with pytest.raises(EnvError, match="closed"):
        env.step(np.zeros(4, np.int64))


def test_a_worker_that_dies_before_reset_is_a_worker_crash(no_leaks: None) -> None:
    env = make_vec("CartPole-v1", 4, num_workers=2, fit_workers=False)
    proc = env.bank.workers[0].proc
    assert proc is not None and proc.pid is not None
    os.kill(proc.pid, signal.SIGKILL)
    proc.join(5.0)
    with pytest.raises(WorkerCrashed, match=r"worker 1 \(envs 2\.\.3 of 'CartPole-v1'\) died"):
        env.reset()
    env.close()


class LastAction(gym.Wrapper[Any, Any, Any, Any]):
    """Keeps the dtype of the last action the env was given."""

    def step(self, action: Any) -> Any:
        self.action_dtype = np.asarray(action).dtype.name
        return self.env.step(action)


@pytest.mark.parametrize("env_id,dtypes", [("Pendulum-v1", ("float64", "float32", "int32", "float16")),
                                           ("CartPole-v1", ("int64", "int32", "uint8"))])
def test_actions_reach_the_env_in_the_callers_dtype(env_id: str, dtypes: tuple[str, ...],
                                                     no_leaks: None) -> None:
    """As SyncVectorEnv hands them on: Pendulum's reward of a float64 torque differs in its last bits from a
    float32 one's, so a bank that cast actions to the space's float32 gave other rewards."""
    fns = [lambda: LastAction(gym.make(env_id)) for _ in range(4)]
    ref = SyncVectorEnv(fns)
    rng = np.random.default_rng(0)
    with make_vec(fns, num_workers=2, fit_workers=False) as ours:
        np.testing.assert_array_equal(ours.reset(seed=5)[0], ref.reset(seed=5)[0])
        for t in range(40):
            dtype = dtypes[t % len(dtypes)]
            if env_id == "Pendulum-v1":
                actions = rng.uniform(-2.5, 2.5, (4, 1)).astype(dtype)
            else:
                actions = rng.integers(0, 2, 4).astype(dtype)
            for a, b in zip(ours.step(actions)[:4], ref.step(actions)[:4], strict=True):
                np.testing.assert_array_equal(a, b, err_msg=f"step {t}, {dtype} actions")
            seen = ours.get_attr("action_dtype")  # an env that was reset this step keeps the last step's
            assert seen == ref.get_attr("action_dtype") and dtype in seen
    ref.close()
