"""Bad input and failures: clear errors naming the env or worker, no hung processes, no leaked memory."""

from __future__ import annotations

import os
import signal
from typing import Any

import gymnasium as gym
import numpy as np
import pytest

from reflow.errors import EnvError, WorkerCrashed
from reflow.rl import make_vec
from reflow.rl.envs import EnvBank, EnvSpec

CRASH = "rl_faulty_envs:reflow-test/Crash-v0"


def test_unknown_env_id_suggests_close_matches(no_leaks: None) -> None:
    with pytest.raises(EnvError, match=r"unknown env id 'CartPol-v1'.*CartPole-v1"):
        make_vec("CartPol-v1", 4, num_workers=2, fit_workers=False)


def test_bad_env_kwargs_name_the_env(no_leaks: None) -> None:
    with pytest.raises(EnvError, match=r"cannot make env 0 \('CartPole-v1'"):
        make_vec("CartPole-v1", 2, num_workers=2, fit_workers=False, no_such_argument=1)


@pytest.mark.parametrize("bad_env", [1, 3])  # env 1 is stepped by the main process, env 3 by worker 1
def test_env_whose_step_raises(bad_env: int, no_leaks: None) -> None:
    specs = [EnvSpec(CRASH, {"crash_step": 2 if i == bad_env else -1}) for i in range(4)]
    bank = EnvBank(specs, num_workers=2, fit_workers=False)
    bank.reset()
    bank.step(np.zeros(4, dtype=np.int64))
    with pytest.raises(EnvError, match=rf"env {bad_env}\b.*boom at step 2"):
        bank.step(np.zeros(4, dtype=np.int64))
    with pytest.raises(EnvError, match="closed"):
        bank.step(np.zeros(4, dtype=np.int64))


@pytest.mark.parametrize("bad_env", [1, 3])
def test_observation_space_mismatch(bad_env: int, no_leaks: None) -> None:
    specs = [EnvSpec(CRASH, {"size": 3 if i == bad_env else 2}) for i in range(4)]
    with pytest.raises(EnvError, match=rf"env {bad_env} .*observation space .*same spaces"):
        EnvBank(specs, num_workers=2, fit_workers=False)


def test_worker_killed_mid_run(no_leaks: None) -> None:
    env = make_vec("CartPole-v1", 6, num_workers=3, fit_workers=False)
    env.reset()
    env.step(np.zeros(6, dtype=np.int64))
    victim = env.bank.workers[1]
    assert victim.proc is not None and victim.proc.pid is not None
    os.kill(victim.proc.pid, signal.SIGKILL)
    victim.proc.join(5.0)
    with pytest.raises(WorkerCrashed, match=r"worker 2 \(envs 4\.\.5 of 'CartPole-v1'\) died"):
        env.step(np.zeros(6, dtype=np.int64))
    env.close()


def test_exception_inside_with_block_releases_everything(no_leaks: None) -> None:
    with pytest.raises(KeyboardInterrupt), \
            make_vec("CartPole-v1", 4, num_workers=2, fit_workers=False) as env:
        env.reset()
        raise KeyboardInterrupt


def test_unsupported_observation_space(no_leaks: None) -> None:
    """A space without a fixed shape (gymnasium batches it as a tuple of objects) is refused up front, naming
    env, space and the way out (docs/rl.md); more in test_envbank_composite.py."""
    with pytest.raises(EnvError, match=r"env 'text_env': observation space has Text\(1, 8, .* no fixed shape"
                       ".*FlattenObservation"):
        make_vec([text_env, text_env], num_workers=2, fit_workers=False)


def text_env() -> gym.Env[Any, Any]:  # a Text observation space, for the test above
    env = gym.make("CartPole-v1")
    return gym.wrappers.TransformObservation(env, str, gym.spaces.Text(8))
