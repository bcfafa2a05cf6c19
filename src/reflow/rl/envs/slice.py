"""Stepping one contiguous slice of a bank's envs on shared arrays.

The same ``SliceRunner`` runs in every worker process and in the parent (which steps slice 0 itself while the
workers step theirs). It reads actions from and writes results to the shared views in place, so the only
per-step traffic between processes is a wake-up. Observations go into the batch buffer the parent names in
``obs_buffer`` (see ``EnvBank``). Auto-reset is done here, next to the env, in one of
gymnasium's three modes:

- NEXT_STEP (gymnasium's default): an env that ended is reset on the following step; that step's action is
  ignored, its reward is 0 and its flags are False.
- SAME_STEP: an env that ends is reset at once; the last observation of the episode goes to ``final_obs``.
- DISABLED: nothing is reset automatically; ``reset(options={"reset_mask": mask})`` resets some envs.

Episode statistics are kept here too, in plain Python numbers beside each env, so that they cost the parent
nothing per step: when an env's episode ends, its return, length and wall time (as gymnasium's
``RecordEpisodeStatistics`` counts them) go to ``episode_return`` / ``episode_length`` / ``episode_time``.
"""

from __future__ import annotations

import time
from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode

NEXT_STEP, SAME_STEP, DISABLED = 0, 1, 2
LARGE_OBS_BYTES = 1024
MODE_CODES = {AutoresetMode.NEXT_STEP: NEXT_STEP, AutoresetMode.SAME_STEP: SAME_STEP,
              AutoresetMode.DISABLED: DISABLED}


class SliceRunner:
    """Envs ``lo..hi-1`` of a bank, stepped into the shared views ``arrays``."""

    def __init__(self, envs: list[gym.Env[Any, Any]], lo: int, arrays: dict[str, np.ndarray[Any, Any]],
                 mode: int, discrete: bool) -> None:
        self.envs = envs
        self.lo, self.hi = lo, lo + len(envs)
        self.a = arrays
        self.mode = mode
        self.discrete = discrete
        self.failed_env = -1  # the bank index of the env whose call raised, for the error message
        self.pending = [False] * len(envs)  # NEXT_STEP: ended last step, reset on this one
        # Small observations are gathered in a list and stored with one numpy call; large ones (images) are
        # stored one by one, which saves building a temporary batch (a second copy of every frame).
        self.obs_one_by_one = arrays["obs"][0, 0].nbytes >= LARGE_OBS_BYTES
        now = time.perf_counter()
        self.returns = [0.0] * len(envs)  # of the running episodes
        self.lengths = [0] * len(envs)
        self.starts = [now] * len(envs)

    def step(self) -> None:
        # Results are collected in Python lists and written with one numpy call per array: a numpy scalar
        # store per env and field costs more than CartPole's own step.
        a, lo, hi = self.a, self.lo, self.hi
        actions: Any = a["actions"][lo:hi].tolist() if self.discrete else a["actions"][lo:hi].copy()
        mode, pending = self.mode, self.pending
        out = self._obs_target()
        one_by_one = self.obs_one_by_one
        obs: list[Any] = []
        rews: list[SupportsFloat] = []
        terms: list[bool] = []
        truncs: list[bool] = []
        r: SupportsFloat
        returns, lengths = self.returns, self.lengths
        for k, env in enumerate(self.envs):
            self.failed_env = lo + k
            if pending[k]:
                o, _ = env.reset()
                r, te, tr = 0.0, False, False
                pending[k] = False
                self._begin_episode(k)
            else:
                o, r, te, tr, _ = env.step(actions[k])
                returns[k] += float(r)
                lengths[k] += 1
                if te or tr:
                    self._episode_ended(k)
                    if mode == SAME_STEP:
                        a["final_obs"][lo + k] = o
                        o, _ = env.reset()
                        self._begin_episode(k)
                    elif mode == NEXT_STEP:
                        pending[k] = True
            if one_by_one:
                out[lo + k] = o
            else:
                obs.append(o)
            rews.append(r)
            terms.append(te)
            truncs.append(tr)
        self.failed_env = -1
        if not one_by_one:
            out[lo:hi] = obs
        a["rewards"][lo:hi] = rews
        a["terminated"][lo:hi] = terms
        a["truncated"][lo:hi] = truncs

    def _obs_target(self) -> np.ndarray[Any, Any]:
        """The batch buffer the parent named for this command's observations."""
        out: np.ndarray[Any, Any] = self.a["obs"][int(self.a["obs_buffer"][0])]
        return out

    def _begin_episode(self, k: int) -> None:
        self.returns[k], self.lengths[k], self.starts[k] = 0.0, 0, time.perf_counter()

    def _episode_ended(self, k: int) -> None:
        i = self.lo + k
        self.a["episode_return"][i] = self.returns[k]
        self.a["episode_length"][i] = self.lengths[k]
        self.a["episode_time"][i] = round(time.perf_counter() - self.starts[k], 6)

    def reset(self, options: dict[str, Any] | None) -> None:
        a, lo = self.a, self.lo
        out = self._obs_target()
        masked = options is not None and "reset_mask" in options
        rest = {k: v for k, v in (options or {}).items() if k != "reset_mask"} or None
        for k, env in enumerate(self.envs):
            i = lo + k
            if masked and not a["reset_mask"][i]:
                continue
            self.failed_env = i
            seed = int(a["seeds"][i]) if a["seeded"][i] else None
            out[i], _ = env.reset(seed=seed, options=rest)
            a["rewards"][i] = 0.0
            a["terminated"][i] = a["truncated"][i] = False
            self.pending[k] = False
            self._begin_episode(k)
        self.failed_env = -1

    def close(self) -> None:
        for env in self.envs:
            env.close()
