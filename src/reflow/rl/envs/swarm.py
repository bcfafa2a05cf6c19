"""SwarmEnv: a small multi-agent env with any number of agents, in PettingZoo's parallel API.

It exists so that multi-agent inference can be tested and benchmarked at 8..64 agents without an extra
dependency: ``chaser_*`` agents move towards the nearest ``runner_*`` agent, runners move away; each agent
sees its own position, its velocity and the offset to its nearest opponent (a 6-float observation) and picks
one of five moves. It follows the parallel API exactly (``reset(seed) -> (obs, infos)``, ``step(actions) ->
(obs, rewards, terminations, truncations, infos)``, ``agents``, ``possible_agents``,
``observation_space(agent)``, ``action_space(agent)``) and passes ``pettingzoo.test.parallel_api_test``. All
randomness comes from the seed.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from gymnasium import spaces

MOVES = np.array([[0, 0], [1, 0], [-1, 0], [0, 1], [0, -1]], dtype=np.float32)


class SwarmEnv:
    """``num_chasers`` chasers and ``num_runners`` runners on a square, for ``max_steps`` steps."""

    metadata: ClassVar[dict[str, Any]] = {"name": "reflow_swarm_v0", "render_modes": []}
    render_mode = None

    def __init__(self, num_chasers: int = 4, num_runners: int = 4, max_steps: int = 100) -> None:
        self.possible_agents = [f"chaser_{i}" for i in range(num_chasers)] + \
            [f"runner_{i}" for i in range(num_runners)]
        self.agents: list[str] = []
        self.max_steps = max_steps
        self._chaser = np.array([a.startswith("chaser") for a in self.possible_agents])
        self._obs_space = spaces.Box(-np.inf, np.inf, (6,), np.float32)
        self._act_space = spaces.Discrete(len(MOVES))
        self._rng = np.random.default_rng()
        self._pos = np.zeros((len(self.possible_agents), 2), np.float32)
        self._vel = np.zeros_like(self._pos)
        self._t = 0

    @property
    def unwrapped(self) -> SwarmEnv:
        return self

    @property
    def num_agents(self) -> int:
        return len(self.agents)

    @property
    def max_num_agents(self) -> int:
        return len(self.possible_agents)

    def observation_space(self, agent: str) -> spaces.Box:
        return self._obs_space

    def action_space(self, agent: str) -> spaces.Discrete:
        return self._act_space

    def _observe(self) -> dict[str, np.ndarray[Any, Any]]:
        pos, chaser = self._pos, self._chaser
        d = np.linalg.norm(pos[:, None, :] - pos[None, :, :], axis=-1)
        d[chaser[:, None] == chaser[None, :]] = np.inf  # nearest *opponent*
        nearest = pos[d.argmin(axis=1)] - pos
        obs = np.concatenate([pos, self._vel, nearest], axis=1).astype(np.float32)
        return {a: obs[i] for i, a in enumerate(self.possible_agents)}

    def reset(self, seed: int | None = None,
              options: dict[str, Any] | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        self.agents = list(self.possible_agents)
        self._pos = self._rng.uniform(-1, 1, self._pos.shape).astype(np.float32)
        self._vel[:] = 0
        self._t = 0
        return self._observe(), {a: {} for a in self.agents}

    def step(self, actions: dict[str, Any]) -> tuple[dict[str, Any], dict[str, float], dict[str, bool],
                                                     dict[str, bool], dict[str, Any]]:
        idx = np.array([int(actions[a]) for a in self.possible_agents])
        self._vel = 0.5 * self._vel + 0.05 * MOVES[idx]
        self._pos = np.clip(self._pos + self._vel, -1, 1)
        self._t += 1
        obs = self._observe()
        gap = np.array([np.linalg.norm(obs[a][4:6]) for a in self.possible_agents])
        reward = np.where(self._chaser, -gap, gap)
        truncated = self._t >= self.max_steps
        rewards = {a: float(reward[i]) for i, a in enumerate(self.possible_agents)}
        flags = {a: False for a in self.agents}
        truncs = {a: truncated for a in self.agents}
        infos: dict[str, Any] = {a: {} for a in self.agents}
        if truncated:
            self.agents = []
        return obs, rewards, flags, truncs, infos

    def close(self) -> None:
        """Nothing to release."""
