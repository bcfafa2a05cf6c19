"""MuJoCo and Atari envs through the bank: a few steps each, equal to gymnasium's SyncVectorEnv."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from reflow.rl import make_vec


@pytest.mark.parametrize("env_id", ["Hopper-v5", "ALE/Pong-v5"])
def test_heavy_env_matches_sync_vector_env(env_id: str, no_leaks: None) -> None:
    if env_id.startswith("ALE/"):
        import ale_py

        gym.register_envs(ale_py)
    ref = gym.vector.SyncVectorEnv([lambda: gym.make(env_id) for _ in range(3)])
    with make_vec(env_id, 3, num_workers=2, fit_workers=False, seed=7) as ours:
        o1, _ = ours.reset()
        o2, _ = ref.reset(seed=7)
        np.testing.assert_array_equal(o1, o2)
        ref.action_space.seed(1)
        for _ in range(5):
            actions = ref.action_space.sample()
            for a, b in zip(ours.step(actions)[:4], ref.step(actions)[:4], strict=True):
                np.testing.assert_array_equal(a, b)
    ref.close()
