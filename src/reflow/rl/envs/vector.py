"""``make_vec``: the env bank behind gymnasium's ``VectorEnv`` interface, with episode statistics.

Existing training code written for ``gymnasium.vector.SyncVectorEnv`` runs unchanged: batched spaces,
``reset(seed=...)``, ``step(actions) -> (obs, rewards, terminations, truncations, infos)``, autoreset in any
of gymnasium's modes (NEXT_STEP by default), ``close()`` and ``with``.

Episode statistics follow ``gymnasium.wrappers.vector.RecordEpisodeStatistics`` exactly: on a step where
some envs finish an episode, ``infos["episode"] = {"r": returns, "l": lengths, "t": seconds}`` (arrays over
all envs, zero where the env did not finish) and ``infos["_episode"]`` is the mask of envs that finished. The
same numbers are kept in ``return_queue`` / ``length_queue`` / ``time_queue`` (the last 100 episodes) and
``episode_count``.

Observations are handed out without a copy: the bank fills one of a few shared batch buffers, and a buffer
is filled again only once no Python object refers to it any more (its reference count says so; numpy views
and ``torch.from_numpy`` tensors of it hold a reference). So with ``copy=True`` a returned batch is never
changed behind its holder's back, as with gymnasium, yet a loop that drops or copies each batch moves no
frame twice. When every buffer is held, the batch is copied. ``copy=False`` always returns the same buffer,
which the next step overwrites (gymnasium's meaning).

What is not forwarded, for speed: the per-env ``info`` dicts of ``env.step``/``env.reset`` (gymnasium would
merge them into arrays every step). With ``autoreset_mode=SAME_STEP`` the last observation of a finished
episode is in ``infos["final_obs"]`` (an object array, None where the env did not finish) and
``infos["_final_obs"]``.
"""

from __future__ import annotations

import sys
from types import TracebackType
from typing import Any

import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from reflow.errors import EnvError
from reflow.rl.envs.bank import EnvBank
from reflow.rl.envs.episodes import EpisodeLog
from reflow.rl.envs.slice import MODE_CODES
from reflow.rl.envs.spec import EnvSpec


class BankVectorEnv(EpisodeLog, VectorEnv[Any, Any, Any]):
    """A gymnasium VectorEnv over an :class:`EnvBank`; build it with :func:`make_vec`."""

    def __init__(self, specs: list[EnvSpec], num_workers: int = 1, seed: int = 0,
                 autoreset_mode: AutoresetMode | str = AutoresetMode.NEXT_STEP, copy: bool = True) -> None:
        mode = AutoresetMode(autoreset_mode)
        self.bank = EnvBank(specs, num_workers=num_workers, seed=seed, autoreset_mode=MODE_CODES[mode])
        self.num_envs = self.bank.num_envs
        self.copy = copy
        # References a batch buffer has when nobody but the bank holds it (measured, not assumed).
        self._unheld_refs = sys.getrefcount(self.bank.obs_buffers[0])
        self._none_done = bytes(self.num_envs)  # the bank's ``done`` flags when no episode ended
        self.autoreset_mode = mode
        self.metadata = {"autoreset_mode": mode}
        self.render_mode = None
        self.single_observation_space = self.bank.single_observation_space
        self.single_action_space = self.bank.single_action_space
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self._first_seed: int | None = seed
        self._init_episode_log()

    def _free_buffer(self) -> int:
        """The batch buffer to fill next: one nobody holds, else the last one (whose batch is copied out).

        With ``copy=False`` it is always buffer 0, which the caller knows to be overwritten."""
        buffers = self.bank.obs_buffers
        if not self.copy:
            return 0
        for k in range(len(buffers) - 1):
            if sys.getrefcount(buffers[k]) <= self._unheld_refs:
                return k
        return len(buffers) - 1

    def _obs(self) -> np.ndarray[Any, Any]:
        k = self.bank.last_buffer
        obs = self.bank.obs_buffers[k]
        if not self.copy:
            return obs
        return obs.copy() if k == len(self.bank.obs_buffers) - 1 else obs.view()

    def reset(self, *, seed: int | list[int | None] | None = None,
              options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        """Reset the envs; an int seed s seeds env i with s + i (the first reset uses make_vec's seed)."""
        if seed is None and self._first_seed is not None:
            seed = self._first_seed
        self._first_seed = None
        seeds: list[int | None] | None
        if seed is None:
            seeds = None
        elif isinstance(seed, int):
            seeds = [seed + i for i in range(self.num_envs)]
        else:
            if len(seed) != self.num_envs:
                raise EnvError(f"reset got {len(seed)} seeds for {self.num_envs} envs")
            seeds = list(seed)
        self.bank.reset(seeds, options, buffer=self._free_buffer())
        return self._obs(), {}

    def step(self, actions: Any) -> tuple[Any, Any, Any, Any, dict[str, Any]]:
        self.bank.step(np.asarray(actions), buffer=self._free_buffer())
        a = self.bank.arrays
        rewards = a["rewards"].copy()
        terms = a["terminated"].copy()
        truncs = a["truncated"].copy()
        infos: dict[str, Any] = {}
        if a["done"].tobytes() != self._none_done:  # cheaper than any() on a fresh ``terms | truncs``
            dones = a["done"].copy()
            self._record(infos, dones, a["episode_return"].copy(), a["episode_length"].copy(),
                         a["episode_time"].copy())
            if self.autoreset_mode == AutoresetMode.SAME_STEP:
                final = np.full(self.num_envs, None, dtype=object)
                for i in np.flatnonzero(dones):
                    final[i] = a["final_obs"][i].copy()
                infos["final_obs"], infos["_final_obs"] = final, dones.copy()
        return self._obs(), rewards, terms, truncs, infos

    def close_extras(self, **kwargs: Any) -> None:
        self.bank.close()

    def __enter__(self) -> BankVectorEnv:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def make_vec(env_id: str, num_envs: int, num_workers: int = 1, seed: int = 0,
             **env_kwargs: Any) -> BankVectorEnv:
    """``num_envs`` copies of gymnasium env ``env_id`` over ``num_workers`` processes (the caller's included).

    Env i is seeded with ``seed + i`` on the first reset, so results are identical for any ``num_workers``.
    ``autoreset_mode=`` and ``copy=`` are taken like gymnasium's; all other keyword arguments go to
    ``gymnasium.make``. Raises EnvError for an unknown id or an env that cannot be made.
    """
    mode = env_kwargs.pop("autoreset_mode", AutoresetMode.NEXT_STEP)
    copy = bool(env_kwargs.pop("copy", True))
    if num_envs < 1:
        raise EnvError(f"make_vec({env_id!r}) needs num_envs >= 1, got {num_envs}")
    specs = [EnvSpec(env_id, dict(env_kwargs)) for _ in range(num_envs)]
    return BankVectorEnv(specs, num_workers=num_workers, seed=seed, autoreset_mode=mode, copy=copy)


__all__ = ["BankVectorEnv", "make_vec"]
