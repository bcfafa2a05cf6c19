"""Small envs that misbehave on purpose; imported by worker processes as ``rl_faulty_envs:<id>``."""

from __future__ import annotations

import multiprocessing
import os
import time
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.envs.classic_control.cartpole import CartPoleEnv


class CrashEnv(gym.Env[np.ndarray, int]):
    """Counts steps; raises on step ``crash_step``, hangs on ``hang_step``, and on ``exit_step`` exits its
    process if that is a worker (each never if negative). Obs has ``size`` entries. Each step takes at least
    ``delay`` seconds."""

    def __init__(self, crash_step: int = -1, size: int = 2, delay: float = 0.0, hang_step: int = -1,
                 exit_step: int = -1) -> None:
        self.observation_space = spaces.Box(-1e9, 1e9, (size,), np.float32)
        self.action_space = spaces.Discrete(2)
        self.crash_step = crash_step
        self.hang_step = hang_step
        self.exit_step = exit_step
        self.delay = delay
        self.t = 0

    def reset(self, *, seed: int | None = None,
              options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        super().reset(seed=seed)
        self.t = 0
        return np.full(self.observation_space.shape, float(self.np_random.integers(100)), np.float32), {}

    def step(self, action: int) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        self.t += 1
        if self.delay:
            time.sleep(self.delay)
        if self.t == self.crash_step:
            raise RuntimeError(f"boom at step {self.t}")
        if self.t == self.exit_step and multiprocessing.parent_process() is not None:
            os._exit(3)  # a worker process that dies (a segfault, the OOM killer); never the test process
        while self.t == self.hang_step:  # a simulator that never answers
            time.sleep(0.01)
        obs = np.full(self.observation_space.shape, float(self.t), np.float32)
        return obs, 1.0, False, self.t >= 5, {}


class LivesEnv(gym.Env[np.ndarray, int]):
    """A game of ``lives`` lives: each step scores 5 (action 1) or 2, a life is lost every 4 steps; reports
    ``lives`` in its info, as ALE does. ``env_id`` and ``copy`` are keyword arguments (names make_vec has)."""

    def __init__(self, lives: int = 3, env_id: str = "", copy: int = 0) -> None:
        self.observation_space = spaces.Box(0, 100, (2,), np.float32)
        self.action_space = spaces.Discrete(2)
        self.start_lives, self.env_id, self.copy = lives, env_id, copy
        self.lives = lives
        self.t = 0

    def reset(self, *, seed: int | None = None,
              options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        super().reset(seed=seed)
        self.lives, self.t = self.start_lives, int(self.np_random.integers(3))
        return np.array([self.t, self.lives], np.float32), {"lives": self.lives}

    def step(self, action: int) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        self.t += 1
        if self.t % 4 == 0:
            self.lives -= 1
        obs = np.array([self.t, self.lives], np.float32)
        return obs, 5.0 if action else 2.0, self.lives == 0, False, {"lives": self.lives}


class EpisodicLife(gym.Wrapper[np.ndarray, int, np.ndarray, int]):
    """Ends an episode at each life lost, as the Atari wrappers of CleanRL and SB3 do; resets only when the
    game is over (otherwise a no-op step goes on from where the life was lost)."""

    def __init__(self, env: gym.Env[np.ndarray, int]) -> None:
        super().__init__(env)
        self.lives, self.game_over = 0, True

    def step(self, action: int) -> tuple[Any, Any, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.game_over = terminated or truncated
        lost = info["lives"] < self.lives
        self.lives = info["lives"]
        return obs, reward, terminated or lost, truncated, info

    def reset(self, *, seed: int | None = None,
              options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        if self.game_over or seed is not None:
            obs, info = self.env.reset(seed=seed, options=options)
        else:
            obs, _, _, _, info = self.env.step(0)
        self.lives = info["lives"]
        return obs, info


class SlowCartPole(CartPoleEnv):
    """CartPole that, when the environment variable REFLOW_TEST_MARK names a file, touches it and lingers: in
    its constructor in a worker process (``where="start"``: 60 s, a bank that takes long to start), or in
    every step (``where="step"``: 0.2 s). Without the variable it is CartPole."""

    def __init__(self, where: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.mark = os.environ.get("REFLOW_TEST_MARK")
        self.where = where
        if self.mark and where == "start" and multiprocessing.parent_process() is not None:
            self._linger(60.0)

    def _linger(self, seconds: float) -> None:
        assert self.mark is not None
        with open(self.mark, "a"):
            pass
        time.sleep(seconds)

    def step(self, action: int) -> Any:
        if self.mark and self.where == "step":
            self._linger(0.2)
        return super().step(action)


gym.register("reflow-test/Crash-v0", entry_point=CrashEnv)
gym.register("reflow-test/SlowStart-v0", entry_point=SlowCartPole, kwargs={"where": "start"},
             max_episode_steps=500)
gym.register("reflow-test/SlowStep-v0", entry_point=SlowCartPole, kwargs={"where": "step"},
             max_episode_steps=500)
gym.register("reflow-test/DiesInWorker-v0", entry_point=CrashEnv, kwargs={"exit_step": 3})
gym.register("reflow-test/Lives-v0", entry_point=LivesEnv)
