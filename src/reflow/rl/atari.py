"""Atari with the standard preprocessing (Mnih et al. 2015, Machado et al. 2018), made in the env workers.

``reflow train ALE/Pong-v5`` trains on ``make_atari("ALE/Pong-v5")``: the ALE env without its own frame
skip, wrapped in ``AtariFrames`` (each action repeated 4 frames, the last two max-pooled, up to 30 no-ops at
reset, grayscale resized to 84x84 by area averaging) and the last 4 frames stacked: uint8 ``(4, 84, 84)``.
The resize is two small matrix products with numpy, so workers need neither OpenCV nor torch. The id
``ATARI_ID`` names it for ``make_vec`` as ``module:id``: spawned workers import this module and build it from
the game's id. Episode statistics are the game's own returns (no life loss ends an episode, no reward is
clipped); ALE v5's sticky actions (p = 0.25) stay on.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

ATARI_ID = "reflow.rl.atari:reflow/AtariPreprocessed-v0"


def area_weights(src: int, dst: int) -> tuple[np.ndarray, np.ndarray]:
    """Area resampling of one axis from ``src`` to ``dst`` cells: output cell i is the sum over k of
    ``weights[k, i] * input[index[k, i]]`` (each output cell covers at most a few input cells)."""
    m = np.zeros((dst, src), dtype=np.float32)
    scale = src / dst
    for i in range(dst):
        lo, hi = i * scale, (i + 1) * scale
        for j in range(int(lo), min(src, int(np.ceil(hi)))):
            m[i, j] = min(hi, j + 1) - max(lo, j)
    m /= m.sum(axis=1, keepdims=True)
    width = int((m > 0).sum(axis=1).max())
    index = np.zeros((width, dst), dtype=np.intp)
    weights = np.zeros((width, dst), dtype=np.float32)
    for i in range(dst):
        cols = np.flatnonzero(m[i])
        index[: len(cols), i], weights[: len(cols), i] = cols, m[i, cols]
    return index, weights


def area_resize(frame: np.ndarray, rows: tuple[np.ndarray, np.ndarray], cols: tuple[np.ndarray, np.ndarray]) \
        -> np.ndarray:
    """Resize a 2-D frame with ``area_weights`` per axis: a few gathers and multiply-adds, no BLAS (whose
    threads fight the learner's for the cores)."""
    x = frame.astype(np.float32)
    tall = sum(w[:, None] * x[i] for i, w in zip(*rows, strict=True))
    out = sum(w[None, :] * tall[:, i] for i, w in zip(*cols, strict=True))
    return np.asarray(np.rint(out), dtype=np.uint8)


class AtariFrames(gym.Wrapper[np.ndarray, int, np.ndarray, int]):
    """Frame skip with max-pooling, no-op starts, grayscale 84x84 (see the module docstring)."""

    def __init__(self, env: gym.Env[Any, Any], skip: int = 4, noop_max: int = 30, size: int = 84) -> None:
        super().__init__(env)
        self.skip, self.noop_max = skip, noop_max
        h, w = env.observation_space.shape[:2]  # type: ignore[index]
        self.rows, self.cols = area_weights(h, size), area_weights(w, size)
        self.observation_space = gym.spaces.Box(0, 255, (size, size), np.uint8)
        self.last = np.zeros((2, h, w), np.uint8)

    def _frame(self) -> np.ndarray:
        return area_resize(np.maximum(self.last[0], self.last[1]), self.rows, self.cols)

    def reset(self, **kwargs: Any) -> tuple[np.ndarray, dict[str, Any]]:
        obs, info = self.env.reset(**kwargs)
        for _ in range(int(self.np_random.integers(0, self.noop_max + 1))):
            obs, _, term, trunc, info = self.env.step(0)
            if term or trunc:
                obs, info = self.env.reset()
        self.last[:] = obs
        return self._frame(), info

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        total, term, trunc, info = 0.0, False, False, dict[str, Any]()
        for i in range(self.skip):
            obs, r, term, trunc, info = self.env.step(action)
            total += float(r)
            if i >= self.skip - 2:
                self.last[i - (self.skip - 2)] = obs
            if term or trunc:
                self.last[:] = obs
                break
        return self._frame(), total, term, trunc, info


def make_atari(game: str, frame_stack: int = 4, **kwargs: Any) -> gym.Env[Any, Any]:
    """``game`` (an ``ALE/...`` id) preprocessed and frame-stacked."""
    import ale_py
    from gymnasium.wrappers import FrameStackObservation

    gym.register_envs(ale_py)
    env = gym.make(game, frameskip=1, obs_type="grayscale", **kwargs)
    return FrameStackObservation(AtariFrames(env), frame_stack)


def env_for(env_id: str) -> tuple[str, dict[str, Any]]:
    """The id and keyword arguments ``make_vec`` gets for ``env_id`` (Atari games get preprocessed)."""
    if env_id.startswith("ALE/"):
        return ATARI_ID, {"game": env_id}
    return env_id, {}


if "reflow/AtariPreprocessed-v0" not in gym.registry:
    gym.register("reflow/AtariPreprocessed-v0", entry_point=make_atari)  # type: ignore[arg-type]
