"""What an env bank replicates, and how its arrays are laid out in one shared segment.

An ``EnvSpec`` is plain, picklable data (an id and keyword arguments), never a closure: worker processes are
started with ``spawn`` and rebuild their envs from it. ``make_env`` is the one place that knows which ids need
a plugin imported first (ALE's ids live in ``ale_py``).

``Layout`` places every per-env array (observations, actions, rewards, flags) at an aligned offset inside one
``SharedSegment``; parent and workers build the same numpy views from it, so a step moves no bytes through a
pipe.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from reflow.errors import EnvError

_ALIGN = 64


@dataclass(frozen=True)
class EnvSpec:
    """One env to build: a gymnasium id (``"module:Id"`` also works) and its keyword arguments."""

    env_id: str
    kwargs: dict[str, Any] = field(default_factory=dict)


def _register_plugins(env_id: str) -> None:
    if env_id.startswith("ALE/"):
        try:
            import ale_py
        except ImportError as e:
            raise EnvError(f"env {env_id!r} needs the ale-py package: pip install ale-py") from e
        gym.register_envs(ale_py)


def check_env_id(env_id: str) -> None:
    """Raise EnvError, with close matches, if gymnasium does not know ``env_id``."""
    _register_plugins(env_id)
    if ":" in env_id:
        return  # "module:Id": the module registers the id when gym.make imports it.
    if env_id not in gym.registry:
        near = difflib.get_close_matches(env_id, list(gym.registry), n=3)
        hint = f"; did you mean {', '.join(near)}?" if near else "; see gymnasium.pprint_registry()"
        raise EnvError(f"unknown env id {env_id!r}{hint}")


def make_env(spec: EnvSpec, index: int) -> gym.Env[Any, Any]:
    """Build env number ``index`` of a bank; any failure becomes an EnvError naming it."""
    _register_plugins(spec.env_id)
    try:
        return gym.make(spec.env_id, **spec.kwargs)
    except Exception as e:
        raise EnvError(f"cannot make env {index} ({spec.env_id!r}, kwargs={spec.kwargs}): "
                       f"{type(e).__name__}: {e}") from e


def check_same_spaces(env: gym.Env[Any, Any], index: int, env_id: str,
                      ref: tuple[spaces.Space[Any], spaces.Space[Any]]) -> None:
    """Every env of a bank must have env 0's spaces, since they share one set of arrays."""
    if (env.observation_space, env.action_space) != ref:
        raise EnvError(f"env {index} ({env_id!r}) has observation space {env.observation_space} and action "
                       f"space {env.action_space}, but env 0 has {ref[0]} and {ref[1]}: every env of a bank "
                       "must have the same spaces")


def array_shape(space: spaces.Space[Any], what: str, env_id: str) -> tuple[tuple[int, ...], np.dtype[Any]]:
    """Shape and dtype of one element of ``space``; only fixed-shape numpy spaces fit in shared arrays."""
    if isinstance(space, spaces.Box | spaces.Discrete | spaces.MultiDiscrete | spaces.MultiBinary):
        assert space.shape is not None and space.dtype is not None
        return tuple(space.shape), np.dtype(space.dtype)
    raise EnvError(f"env {env_id!r}: {what} space {space} is not supported by the env bank "
                   "(use Box, Discrete, MultiDiscrete or MultiBinary, e.g. via "
                   "gymnasium.wrappers.FlattenObservation)")


@dataclass(frozen=True)
class ArraySlot:
    offset: int
    shape: tuple[int, ...]
    dtype: str


@dataclass(frozen=True)
class Layout:
    """Offsets of the named arrays inside one segment; identical in every process."""

    slots: dict[str, ArraySlot]
    size: int

    @classmethod
    def build(cls, arrays: dict[str, tuple[tuple[int, ...], np.dtype[Any]]]) -> Layout:
        slots: dict[str, ArraySlot] = {}
        offset = 0
        for name, (shape, dtype) in arrays.items():
            slots[name] = ArraySlot(offset, shape, dtype.str)
            nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
            offset += (nbytes + _ALIGN - 1) // _ALIGN * _ALIGN
        return cls(slots, max(offset, _ALIGN))

    def views(self, buf: memoryview) -> dict[str, np.ndarray[Any, Any]]:
        return {name: np.ndarray(s.shape, dtype=np.dtype(s.dtype), buffer=buf, offset=s.offset)
                for name, s in self.slots.items()}

    def split(self, buf: memoryview, name: str) -> list[np.ndarray[Any, Any]]:
        """One array per index of ``name``'s first axis, each made straight from ``buf``.

        Every view later taken of one of them has it, not a shared parent, as its numpy ``base``; so its
        reference count says whether anybody still holds data from it."""
        slot = self.slots[name]
        dtype, inner = np.dtype(slot.dtype), slot.shape[1:]
        stride = int(np.prod(inner, dtype=np.int64)) * dtype.itemsize
        return [np.ndarray(inner, dtype=dtype, buffer=buf, offset=slot.offset + k * stride)
                for k in range(slot.shape[0])]


def bank_layout(num_envs: int, num_slices: int, obs: tuple[tuple[int, ...], np.dtype[Any]],
                act: tuple[tuple[int, ...], np.dtype[Any]], obs_buffers: int) -> Layout:
    """The arrays every bank shares: per env data, plus one command and status word per slice.

    Observations have ``obs_buffers`` whole batches; ``obs_buffer`` says which one the next command fills."""
    n = num_envs
    return Layout.build({
        "obs": ((obs_buffers, n, *obs[0]), obs[1]),
        "obs_buffer": ((1,), np.dtype(np.int64)),
        "final_obs": ((n, *obs[0]), obs[1]),
        "actions": ((n, *act[0]), act[1]),
        "rewards": ((n,), np.dtype(np.float64)),
        "terminated": ((n,), np.dtype(np.bool_)),
        "truncated": ((n,), np.dtype(np.bool_)),
        "done": ((n,), np.dtype(np.bool_)),  # terminated or truncated, so the parent need not compute it
        "episode_return": ((n,), np.dtype(np.float64)),
        "episode_length": ((n,), np.dtype(np.int64)),
        "episode_time": ((n,), np.dtype(np.float64)),
        "reset_mask": ((n,), np.dtype(np.bool_)),
        "seeds": ((n,), np.dtype(np.int64)),
        "seeded": ((n,), np.dtype(np.bool_)),
        "command": ((num_slices,), np.dtype(np.int64)),
        "status": ((num_slices,), np.dtype(np.int64)),
    })
