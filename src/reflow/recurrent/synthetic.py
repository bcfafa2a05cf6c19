"""A synthetic env with image observations of any size, for benchmarks (after Tempo's "trivial" env).

The state is a number in [-1, 1]; action 1 raises it by 0.05, action 0 lowers it; the reward is -|state|;
the observation is the state written into every pixel of a ``(C, H, W)`` image. Episodes never end early:
they are cut at ``max_episode_steps`` (truncation), so every iteration steps the full horizon and the cost of
moving large observations dominates, as in Tempo's large-observation experiments.

Importing this module registers ``ImageTarget-v0`` with gymnasium; env banks make it in their worker
processes from the id ``"reflow.recurrent.synthetic:ImageTarget-v0"``.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

ENV_ID = "reflow.recurrent.synthetic:ImageTarget-v0"


class ImageTarget(gym.Env[np.ndarray, np.int64]):
    """Steer a number to 0, seeing it as an image (see the module docstring)."""

    def __init__(self, obs_shape: tuple[int, ...] = (3, 64, 64)) -> None:
        self.metadata = {"render_modes": []}
        self.obs_shape = tuple(obs_shape)
        self.observation_space = spaces.Box(-1.0, 1.0, self.obs_shape, np.float32)
        self.action_space = spaces.Discrete(2)
        self.state = 0.0
        self._obs = np.zeros(self.obs_shape, np.float32)

    def _observe(self) -> np.ndarray:
        self._obs.fill(self.state)
        return self._obs.copy()

    def reset(self, *, seed: int | None = None,
              options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self.state = float(self.np_random.uniform(-1.0, 1.0))
        return self._observe(), {}

    def step(self, action: np.int64) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        self.state = float(np.clip(self.state + (0.05 if int(action) == 1 else -0.05), -1.0, 1.0))
        return self._observe(), -abs(self.state), False, False, {}


if "ImageTarget-v0" not in gym.registry:
    gym.register("ImageTarget-v0", entry_point=f"{__name__}:ImageTarget", max_episode_steps=100_000)
