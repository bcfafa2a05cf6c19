"""Small envs that misbehave on purpose; imported by worker processes as ``rl_faulty_envs:<id>``."""

from __future__ import annotations

import time
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces


class CrashEnv(gym.Env[np.ndarray, int]):
    """Counts steps; raises on step ``crash_step`` (never if negative). Obs has ``size`` entries. Each step
    takes at least ``delay`` seconds."""

    def __init__(self, crash_step: int = -1, size: int = 2, delay: float = 0.0) -> None:
        self.observation_space = spaces.Box(-1e9, 1e9, (size,), np.float32)
        self.action_space = spaces.Discrete(2)
        self.crash_step = crash_step
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
        obs = np.full(self.observation_space.shape, float(self.t), np.float32)
        return obs, 1.0, False, self.t >= 5, {}


gym.register("reflow-test/Crash-v0", entry_point=CrashEnv)
