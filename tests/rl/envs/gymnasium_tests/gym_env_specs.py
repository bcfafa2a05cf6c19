"""gymnasium's list of envs to test with (``all_testing_env_specs``), apart so that workers importing
gym_testing.py do not make every env.

Translated from Farama-Foundation/Gymnasium (v1.4.0, MIT License, Copyright (c) 2016 OpenAI, (c) 2022 Farama
Foundation) tests/envs/utils.py, restricted to the classic-control, toy-text and Box2D envs (gymnasium's
lists every registered env, ~70 with MuJoCo, too slow for reflow's test budget).
"""

# ruff: noqa
# mypy: ignore-errors

from __future__ import annotations

import gymnasium as gym
from gymnasium import logger
from gymnasium.envs.registration import EnvSpec


def try_make_env(env_spec: EnvSpec) -> gym.Env | None:
    if isinstance(env_spec.entry_point, str) and any(
        f"gymnasium.envs.{ep}" in env_spec.entry_point for ep in ["box2d", "classic_control", "toy_text"]
    ):
        try:
            return env_spec.make(disable_env_checker=True).unwrapped
        except (ImportError, AttributeError, gym.error.DependencyNotInstalled, gym.error.MissingArgument) as e:
            logger.warn(f"Not testing {env_spec.id} due to error: {e}")
    return None


all_testing_initialised_envs = [try_make_env(env_spec) for env_spec in gym.envs.registry.values()]
all_testing_env_specs: list[EnvSpec] = [env.spec for env in all_testing_initialised_envs if env is not None]
