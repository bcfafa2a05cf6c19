"""What an env bank replicates, and how its arrays are laid out in one shared segment.

An ``EnvSpec`` says how to build one env: a gymnasium id with keyword arguments, or a constructor (a
callable returning an env, as gymnasium's ``env_fns``), then wrappers applied in order. The parent resolves
ids to gymnasium's own registry entries (``resolve``), so worker processes need neither the caller's
``__main__`` nor its registrations: specs travel to them pickled by value with cloudpickle. ``make_env`` is
the one place that builds an env, in the parent and in the workers alike.

Episode statistics come from the innermost ``RecordEpisodeStatistics`` of an env's stack: with ``wrappers``
the bank puts one first (right after ``gym.make``), so returns and lengths are the game's own, not per life
or clipped; a constructor's stack may hold one itself (CleanRL's do); without either the bank counts the
rewards the env returns.

``Layout`` places every per-env array (observations, actions, rewards, flags) at an aligned offset inside one
``SharedSegment``; parent and workers build the same numpy views from it, so a step moves no bytes through a
pipe. A ``Dict`` or ``Tuple`` space has one array per leaf (``space_tree.py``).

Actions reach each env in the dtype the caller gave them, as ``SyncVectorEnv`` hands them on (Pendulum's
reward differs in the last bits between a float64 and a float32 torque). So the shared array holds them
widened (int64 for Discrete, MultiDiscrete and MultiBinary, float64 for Box) and ``action_dtype`` names the
caller's dtype per env, an index into ``ACTION_DTYPES``; each of those round-trips through the wide dtype
exactly (for a Box, integers up to 2**53). Any other dtype reaches the env as the wide one.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.envs.registration import EnvSpec as GymSpec
from gymnasium.envs.registration import load_env_creator
from gymnasium.wrappers import RecordEpisodeStatistics

from reflow.errors import EnvError
from reflow.rl.envs.space_tree import SpaceTree

_ALIGN = 64
Wrapper = Callable[[gym.Env[Any, Any]], gym.Env[Any, Any]]


@dataclass(frozen=True)
class EnvSpec:
    """One env to build: gymnasium id ``env_id`` (``"module:Id"`` also works) with ``kwargs``, or
    ``make()`` (an env constructor); then each of ``wrappers`` in order. ``registered`` is the id's
    registry entry, filled in by ``resolve``."""

    env_id: str = ""
    kwargs: dict[str, Any] = field(default_factory=dict)
    make: Callable[[], gym.Env[Any, Any]] | None = None
    wrappers: tuple[Wrapper, ...] = ()
    registered: GymSpec | None = None

    @property
    def name(self) -> str:
        """What error messages call this env: its id, or its constructor's name."""
        if self.env_id or self.make is None:
            return self.env_id
        return getattr(self.make, "__qualname__", None) or repr(self.make)


def _register_plugins(env_id: str) -> None:
    if env_id.startswith("ALE/"):
        try:
            import ale_py
        except ImportError as e:
            raise EnvError(f"env {env_id!r} needs the ale-py package: pip install ale-py") from e
        gym.register_envs(ale_py)


def check_env_id(env_id: str) -> GymSpec:
    """The registry entry of ``env_id``; EnvError with close matches if gymnasium does not know it."""
    _register_plugins(env_id)
    module, _, name = env_id.rpartition(":")
    if module:
        try:
            importlib.import_module(module)
        except ImportError as e:
            raise EnvError(f"env {env_id!r}: cannot import module {module!r} ({e})") from e
    if name not in gym.registry:
        near = difflib.get_close_matches(name, list(gym.registry), n=3)
        hint = f"; did you mean {', '.join(near)}?" if near else "; see gymnasium.pprint_registry()"
        raise EnvError(f"unknown env id {env_id!r}{hint}")
    spec = gym.spec(name)
    if isinstance(spec.entry_point, str) and spec.entry_point.startswith("__main__:"):
        # The caller's script is not run again in the workers: hand them the class itself (by value).
        creator: Any = load_env_creator(spec.entry_point)
        spec = dataclasses.replace(spec, entry_point=creator)
    return spec


def resolve(specs: Sequence[EnvSpec]) -> list[EnvSpec]:
    """``specs`` with each id looked up once in gymnasium's registry (raises EnvError for unknown ids)."""
    found: dict[str, GymSpec] = {}
    for env_id in sorted({s.env_id for s in specs if s.make is None}):
        found[env_id] = check_env_id(env_id)
    return [s if s.make is not None else dataclasses.replace(s, registered=found[s.env_id]) for s in specs]


def make_env(spec: EnvSpec, index: int) -> gym.Env[Any, Any]:
    """Build env number ``index`` of a bank; any failure becomes an EnvError naming it."""
    try:
        if spec.make is not None:
            env = spec.make()
        else:
            _register_plugins(spec.env_id)
            env = gym.make(spec.registered or spec.env_id, **spec.kwargs)
        if spec.wrappers:
            env = RecordEpisodeStatistics(env)
            for wrap in spec.wrappers:
                env = wrap(env)
    except Exception as e:
        what = f"kwargs={spec.kwargs}" if spec.make is None else "constructor"
        raise EnvError(f"cannot make env {index} ({spec.name!r}, {what}): {type(e).__name__}: {e}") from e
    if not isinstance(env, gym.Env):
        raise EnvError(f"env {index} ({spec.name!r}): the constructor returned {type(env).__name__}, not a "
                       "gymnasium Env")
    return env


def episode_recorder(env: gym.Env[Any, Any]) -> RecordEpisodeStatistics[Any, Any] | None:
    """The innermost ``RecordEpisodeStatistics`` wrapper in ``env``'s stack, if there is one."""
    found = None
    while isinstance(env, gym.Wrapper):
        if isinstance(env, RecordEpisodeStatistics):
            found = env
        env = env.env
    return found


def check_same_spaces(env: gym.Env[Any, Any], index: int, env_id: str,
                      ref: tuple[spaces.Space[Any], spaces.Space[Any]]) -> None:
    """Every env of a bank must have env 0's spaces, since they share one set of arrays."""
    if (env.observation_space, env.action_space) != ref:
        raise EnvError(f"env {index} ({env_id!r}) has observation space {env.observation_space} and action "
                       f"space {env.action_space}, but env 0 has {ref[0]} and {ref[1]}: every env of a bank "
                       "must have the same spaces")


ACTION_DTYPES = tuple(np.dtype(t) for t in ("float64", "float32", "float16", "int64", "int32", "int16",
                                            "int8", "uint32", "uint16", "uint8", "bool"))
_ACTION_CODES = {dtype: code for code, dtype in enumerate(ACTION_DTYPES)}
_INTEGRAL_SPACES = spaces.Discrete | spaces.MultiDiscrete | spaces.MultiBinary


def action_storage(space: spaces.Space[Any]) -> np.dtype[Any]:
    """The dtype of the shared action array for ``space`` (a leaf): wide enough for any action gymnasium
    lets in."""
    return np.dtype(np.int64 if isinstance(space, _INTEGRAL_SPACES) else np.float64)


def action_code(dtype: np.dtype[Any], storage: np.dtype[Any]) -> int:
    """The ``action_dtype`` code of actions of ``dtype`` stored in an array of ``storage``."""
    code = _ACTION_CODES.get(dtype)
    return _ACTION_CODES[storage] if code is None else code


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


def bank_layout(num_envs: int, num_slices: int, obs: SpaceTree, act: SpaceTree, obs_buffers: int) -> Layout:
    """The arrays every bank shares: per env data, plus command, status and progress words per slice.

    Each leaf of the observation space has ``obs_buffers`` whole batches (``obs``, ``obs.1``, ...);
    ``obs_buffer`` says which one the next command fills. Each leaf of the action space has its array
    (``actions``, ``actions.1``, ...; of ``action_storage``) and its per-env dtype codes (``action_dtype``,
    ``action_dtype.1``, ...: the caller's dtype, an index into ``ACTION_DTYPES``)."""
    n = num_envs
    arrays: dict[str, tuple[tuple[int, ...], np.dtype[Any]]] = {}
    for name, leaf in zip(obs.names("obs"), obs.leaves, strict=True):
        arrays[name] = ((obs_buffers, n, *leaf.shape), leaf.dtype)
    arrays["obs_buffer"] = ((1,), np.dtype(np.int64))
    for name, code, leaf in zip(act.names("actions"), act.names("action_dtype"), act.leaves, strict=True):
        arrays[name] = ((n, *leaf.shape), action_storage(leaf.space))
        arrays[code] = ((n,), np.dtype(np.int8))
    return Layout.build({
        **arrays,
        "rewards": ((n,), np.dtype(np.float64)),
        "terminated": ((n,), np.dtype(np.bool_)),
        "truncated": ((n,), np.dtype(np.bool_)),
        "done": ((n,), np.dtype(np.bool_)),  # terminated or truncated, so the parent need not compute it
        "episode_return": ((n,), np.dtype(np.float64)),
        "episode_length": ((n,), np.dtype(np.int64)),
        "episode_time": ((n,), np.dtype(np.float64)),
        "ended": ((n,), np.dtype(np.bool_)),  # envs whose episode statistics this step wrote
        "reset_mask": ((n,), np.dtype(np.bool_)),
        "seeds": ((n,), np.dtype(np.int64)),
        "seeded": ((n,), np.dtype(np.bool_)),
        "command": ((num_slices,), np.dtype(np.int64)),
        "status": ((num_slices,), np.dtype(np.int64)),
        "progress": ((num_slices,), np.dtype(np.int64)),  # the env a slice is calling (with a timeout)
    })


def store_actions(tree: SpaceTree, arrays: dict[str, np.ndarray[Any, Any]], rows: Any, actions: Any) -> None:
    """Write the batch ``actions`` (of ``tree``'s space) to rows ``rows`` of the shared action arrays, with
    the code of each leaf's dtype."""
    names = zip(tree.names("actions"), tree.names("action_dtype"), tree.flatten(actions), strict=True)
    for name, code, leaf in names:
        leaf = np.asarray(leaf)
        arrays[name][rows] = leaf
        arrays[code][rows] = action_code(leaf.dtype, arrays[name].dtype)


def obs_leaf_buffers(layout: Layout, buf: memoryview, tree: SpaceTree) -> list[list[np.ndarray[Any, Any]]]:
    """Per batch buffer, its leaf arrays (each made straight from ``buf``: see ``Layout.split``)."""
    per_leaf = [layout.split(buf, name) for name in tree.names("obs")]
    return [list(leaves) for leaves in zip(*per_leaf, strict=True)]
