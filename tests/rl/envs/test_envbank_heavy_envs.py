"""MuJoCo, Atari and Box2D envs through the bank: a few steps each, equal to gymnasium's SyncVectorEnv (infos
too: Atari's lives and frame numbers)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import data_equivalence

from reflow.rl import make_vec


@pytest.mark.parametrize("env_id", ["Hopper-v5", "ALE/Pong-v5", "LunarLander-v3"])
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
            mine, theirs = ours.step(actions), ref.step(actions)
            for a, b in zip(mine[:4], theirs[:4], strict=True):
                np.testing.assert_array_equal(a, b)
            assert data_equivalence(mine[4], theirs[4])
    ref.close()
