"""``make_vec``: the env bank behind gymnasium's ``VectorEnv`` interface, with episode statistics.

A drop-in for ``gymnasium.vector.SyncVectorEnv``: ``make_vec(env_fns)`` takes the same list of env
constructors (``make_vec("CartPole-v1", 8)`` an id), and gives the same batched spaces, ``reset`` and
``step`` results, infos (merged per key with a ``_key`` mask; under SAME_STEP ``final_obs`` /
``final_info``), ``call`` / ``get_attr`` / ``set_attr`` / ``render`` on the envs in their processes,
``np_random_seed``, autoreset in any of gymnasium's modes (NEXT_STEP by default), and refuses what it
refuses (``contract.py``); tests run gymnasium's own vector-env tests against it.

Episode statistics follow ``gymnasium.wrappers.vector.RecordEpisodeStatistics``: on a step where some envs
finish an episode, ``infos["episode"] = {"r": returns, "l": lengths, "t": seconds}`` (arrays over all envs,
zero where the env did not finish) and ``infos["_episode"]`` is the mask of envs that finished. They come from
the innermost ``RecordEpisodeStatistics`` of each env (see ``spec.py``), so with Atari wrappers they are the
game's, not a life's. They are added to the infos of an env made from an id (``episode_infos=True``); a
bank of constructors gives exactly ``SyncVectorEnv``'s infos (a constructor that puts
``RecordEpisodeStatistics`` first, as CleanRL's do, reports its episodes there itself). Either way the same
numbers are kept in ``return_queue`` / ``length_queue`` / ``time_queue`` (the last 100) and ``episode_count``.

Observations are handed out without a copy: the bank fills one of a few shared batch buffers, and a buffer
is filled again only once no Python object refers to it any more (its reference count says so; numpy views
and ``torch.from_numpy`` tensors of it hold a reference). So with ``copy=True`` a returned batch is never
changed behind its holder's back, as with gymnasium, yet a loop that drops or copies each batch moves no
frame twice. When every buffer is held, the batch is copied. ``copy=False`` always returns the same buffer,
which the next step overwrites (gymnasium's meaning). A ``Dict`` or ``Tuple`` space's batch is a new dict
/ tuple of views of its leaves' buffers (``space_tree.py``); a buffer is free when none of its leaves is
held.
"""

from __future__ import annotations

import copy as copying
import sys
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any

import numpy as np
from gymnasium import Env
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from reflow.errors import EnvArgumentError, EnvError
from reflow.rl.envs.bank import EnvBank
from reflow.rl.envs.contract import ActionCheck, check_reset_mask, env_seeds, per_env_values
from reflow.rl.envs.episodes import EpisodeLog
from reflow.rl.envs.infos import merge_infos
from reflow.rl.envs.ray_bank import RayEnvBank, check_backend
from reflow.rl.envs.slice import MODE_CODES
from reflow.rl.envs.spec import EnvSpec, Wrapper


class BankVectorEnv(EpisodeLog, VectorEnv[Any, Any, Any]):
    """A gymnasium VectorEnv over an :class:`EnvBank`; build it with :func:`make_vec`."""

    def __init__(self, specs: list[EnvSpec], num_workers: int = 1, seed: int | None = 0,
                 autoreset_mode: AutoresetMode | str = AutoresetMode.NEXT_STEP, copy: bool = True,
                 episode_infos: bool = True, step_timeout: float | None = None,
                 fit_workers: bool = True, backend: str = "local", ray_address: str | None = None) -> None:
        mode = AutoresetMode(autoreset_mode)
        check_backend(backend)
        self.bank: EnvBank | RayEnvBank
        if backend == "ray":  # the same bank, with its envs on the nodes of a Ray cluster (ray_bank.py)
            self.bank = RayEnvBank(specs, num_workers, autoreset_mode=MODE_CODES[mode],
                                   step_timeout=step_timeout, fit_workers=fit_workers, address=ray_address)
        else:
            self.bank = EnvBank(specs, num_workers=num_workers, seed=seed, autoreset_mode=MODE_CODES[mode],
                                step_timeout=step_timeout, fit_workers=fit_workers)
        self.num_envs = self.bank.num_envs
        self.copy = copy
        self.episode_infos = episode_infos
        # References a batch buffer (each leaf array of one) has when nobody but the bank holds it (measured,
        # not assumed; a plain space's one leaf is its buffer).
        self._plain = self.bank.obs_tree.plain
        self._unheld_refs = (sys.getrefcount(self.bank.obs_buffers[0]) if self._plain else
                             max(map(sys.getrefcount, self.bank.obs_leaves[0])))
        self._none_done = bytes(self.num_envs)  # the bank's ``done`` flags when no episode ended
        self._unreset = np.zeros(self.num_envs, bool)  # DISABLED: envs that ended and were not reset since
        self.autoreset_mode = mode
        self.metadata = {**self.bank.metadata, "autoreset_mode": mode}
        self.render_mode = self.bank.render_mode
        self.single_observation_space = self.bank.single_observation_space
        self.single_action_space = self.bank.single_action_space
        if seed is not None and all(s.make is None for s in specs):  # envs made here, not by the caller
            self.single_action_space.seed(seed)
            self.single_observation_space.seed(seed)
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self._check_actions = ActionCheck(self.single_action_space, self.num_envs)
        self._first_seed: int | None = seed
        self._init_episode_log()

    def _free_buffer(self) -> int:
        """The batch buffer to fill next: one nobody holds, else the last one (whose batch is copied out).

        With ``copy=False`` it is always buffer 0, which the caller knows to be overwritten."""
        if not self.copy:
            return 0
        unheld = self._unheld_refs
        if self._plain:
            buffers = self.bank.obs_buffers
            for k in range(len(buffers) - 1):
                if sys.getrefcount(buffers[k]) <= unheld:
                    return k
            return len(buffers) - 1
        every = self.bank.obs_leaves
        for k in range(len(every) - 1):
            leaves = every[k]
            if max(map(sys.getrefcount, leaves)) <= unheld:
                return k
        return len(every) - 1

    def _obs(self) -> Any:
        """The observations of the last command: a view of the bank's buffer (a copy of the last buffer);
        with a Dict or Tuple space a new dict / tuple of such views, as ``SyncVectorEnv`` gives a new one."""
        k = self.bank.last_buffer
        if not self.copy:
            return self.bank.obs_buffers[k]
        last = k == len(self.bank.obs_buffers) - 1
        if self._plain:
            obs = self.bank.obs_buffers[k]
            return obs.copy() if last else obs.view()
        return self.bank.obs_tree.unflatten([leaf.copy() if last else leaf.view()
                                             for leaf in self.bank.obs_leaves[k]])

    def _infos(self) -> dict[str, Any]:
        """The envs' infos of the last command, merged as ``SyncVectorEnv`` merges them."""
        return merge_infos(self.bank.events, self.num_envs, self._add_info)

    def reset(self, *, seed: int | list[int | None] | None = None,
              options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        """Reset the envs; an int seed s seeds env i with s + i (the first reset uses make_vec's seed)."""
        if seed is None and self._first_seed is not None:
            seed = self._first_seed
        seeds = env_seeds(seed, self.num_envs)
        if options is not None and "reset_mask" in options:
            mask = check_reset_mask(options["reset_mask"], self.num_envs)
            self._unreset &= ~mask
        else:
            self._unreset[:] = False
        self._first_seed = None
        self.bank.reset(seeds, options, buffer=self._free_buffer())
        return self._obs(), self._infos()

    def step(self, actions: Any) -> tuple[Any, Any, Any, Any, dict[str, Any]]:
        actions = self._check_actions(actions)
        if self.autoreset_mode == AutoresetMode.DISABLED and self._unreset.any():
            raise EnvArgumentError(f"envs {np.flatnonzero(self._unreset).tolist()} ended and were not reset; "
                                   "with AutoresetMode.DISABLED reset them first: "
                                   "reset(options={'reset_mask': mask})")
        self.bank.step(actions, buffer=self._free_buffer())
        a = self.bank.arrays
        rewards = a["rewards"].copy()
        terms = a["terminated"].copy()
        truncs = a["truncated"].copy()
        infos = self._infos() if self.bank.events else {}
        if a["done"].tobytes() != self._none_done:  # cheaper than any() on a fresh ``terms | truncs``
            if self.autoreset_mode == AutoresetMode.DISABLED:
                self._unreset |= a["done"]
            ended = a["ended"].copy()
            if ended.any():
                into = infos if self.episode_infos and "episode" not in infos else None
                self._record(into, ended, a["episode_return"].copy(), a["episode_length"].copy(),
                             a["episode_time"].copy())
        return self._obs(), rewards, terms, truncs, infos

    def call(self, name: str, *args: Any, **kwargs: Any) -> tuple[Any, ...]:
        """Each env's attribute ``name``, called with ``args`` and ``kwargs`` if callable (in its process)."""
        return tuple(self.bank.call(name, *args, **kwargs))

    def get_attr(self, name: str) -> tuple[Any, ...]:
        """Each env's attribute ``name`` (as ``SyncVectorEnv``: a callable one is called)."""
        return self.call(name)

    def set_attr(self, name: str, values: list[Any] | tuple[Any, ...] | Any) -> None:
        """Set attribute ``name`` of each env: ``values[i]`` for env i, or one value for all."""
        self.bank.set_attr(name, per_env_values(values, self.num_envs))

    def render(self) -> tuple[Any, ...]:
        """Each env's ``render()`` (rgb_array frames come back as a tuple of arrays, as gymnasium's)."""
        return self.call("render")

    @property
    def np_random_seed(self) -> tuple[int, ...]:  # type: ignore[override]
        """The seed of each env's random generator (a tuple, one per env, as ``SyncVectorEnv``'s)."""
        return self.get_attr("np_random_seed")

    @property  # type: ignore[misc]
    def np_random(self) -> tuple[np.random.Generator, ...]:  # type: ignore[override]
        """Copies of each env's random generator (the generators themselves live in the workers)."""
        return self.get_attr("np_random")

    def close_extras(self, **kwargs: Any) -> None:
        self.bank.close()

    def __enter__(self) -> BankVectorEnv:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


EnvFn = Callable[[], Env[Any, Any]]


def make_vec(env: str | EnvFn | Sequence[EnvFn], /, num_envs: int | None = None, *, num_workers: int = 1,
             seed: int | None = 0, autoreset_mode: AutoresetMode | str = AutoresetMode.NEXT_STEP,
             copy: bool = True, wrappers: Sequence[Wrapper] = (), env_kwargs: dict[str, Any] | None = None,
             episode_infos: bool | None = None, step_timeout: float | None = None, fit_workers: bool = True,
             backend: str = "local", ray_address: str | None = None, **kwargs: Any) -> BankVectorEnv:
    """``num_envs`` envs over ``num_workers`` processes (the caller's included).

    ``env`` is a gymnasium id (``gym.make(env, **env_kwargs, **kwargs)`` per env), a list of env
    constructors (gymnasium's ``env_fns``: one env each), or one constructor (called ``num_envs`` times).
    Constructors, wrappers and env classes may be defined anywhere, the caller's script included: they go to
    the workers pickled by value. ``wrappers`` are applied to each env in order, after a
    ``RecordEpisodeStatistics`` the bank puts first, so episode statistics are the env's own.

    Env i is seeded with ``seed + i`` on the first reset, so results are identical for any ``num_workers``;
    the single spaces of envs made from an id are seeded with ``seed`` (``action_space.sample()`` is
    reproducible). ``autoreset_mode`` and ``copy`` are taken like gymnasium's; ``episode_infos`` (default:
    True for an id) adds the bank's episode statistics to the infos. ``step_timeout`` (seconds, off by
    default) turns a step or reset that hangs into ``EnvTimeout``. ``fit_workers`` lets the bank use fewer
    processes when fewer cores are free (``EnvBank``). ``backend="ray"`` spreads the slices over the nodes
    of a Ray cluster (the one connected, else ``ray_address``, else a local Ray), each node stepping its
    own slices on shared memory; same interface, same trajectories. Any keyword argument not named here goes
    to the env;
    ``env_kwargs`` passes those whose names are taken here (``seed``, ``copy``, ...).
    Raises EnvError for an unknown id or an env that cannot be made.
    """
    env_kwargs = {**(env_kwargs or {}), **kwargs}
    if isinstance(env, str):
        if num_envs is None:
            raise EnvError(f"make_vec({env!r}) needs num_envs")
        specs = [EnvSpec(env, dict(env_kwargs), wrappers=tuple(wrappers)) for _ in range(num_envs)]
    else:
        fns: list[EnvFn] = list(env) if not callable(env) else [env] * (num_envs or 0)
        if not all(callable(f) for f in fns):
            raise EnvError("make_vec takes an env id, an env constructor, or a list of env constructors; got "
                           f"{env!r}")
        if env_kwargs:
            raise EnvError(f"keyword arguments {sorted(env_kwargs)} go to gym.make, but make_vec got env "
                           "constructors: give the constructors their arguments instead")
        if num_envs is not None and num_envs != len(fns):
            raise EnvError(f"make_vec got {len(fns)} env constructors but num_envs={num_envs}")
        specs = [EnvSpec(make=f, wrappers=tuple(wrappers)) for f in fns]
    if not specs:
        raise EnvError(f"make_vec needs num_envs >= 1, got {num_envs}")
    vec = BankVectorEnv(specs, num_workers=num_workers, seed=seed, autoreset_mode=autoreset_mode, copy=copy,
                        episode_infos=isinstance(env, str) if episode_infos is None else episode_infos,
                        step_timeout=step_timeout, fit_workers=fit_workers, backend=backend,
                        ray_address=ray_address)
    if isinstance(env, str):
        vec.spec = _vector_spec(vec.bank.specs[0], len(specs), wrappers)
    return vec


def _vector_spec(spec: EnvSpec, num_envs: int, wrappers: Sequence[Wrapper]) -> Any:
    """gymnasium's spec of the env id, with the kwargs it was made with, as ``gymnasium.make_vec`` sets it."""
    if spec.registered is None:
        return None
    out = copying.deepcopy(spec.registered)
    out.kwargs = {**spec.kwargs, "num_envs": num_envs}
    if wrappers:
        out.kwargs["wrappers"] = list(wrappers)
    return out


__all__ = ["BankVectorEnv", "make_vec"]
