"""A gymnasium space as a tree of fixed-shape arrays: how the env bank shares any space it can batch.

gymnasium's vector envs batch a ``Dict`` or ``Tuple`` space (nested to any depth) leaf by leaf: the batch of
a ``Dict`` is a dict of batched leaves, of a ``Tuple`` a tuple of them (``create_empty_array``,
``concatenate``, ``iterate``). ``SpaceTree`` is that structure made explicit once: its ``leaves`` are the
``Box``, ``Discrete``, ``MultiDiscrete`` and ``MultiBinary`` spaces in gymnasium's order (a Dict's keys in
its order, depth first), each with a fixed shape and dtype, so the bank gives each leaf its own shared array
and moves values in and out by ``flatten`` (a value to its leaves) and ``unflatten`` (leaves back to the
same nested dict / tuple). A space that is a leaf itself is a tree of one leaf whose value is the value: the
plain ``Box`` path has no structure to walk.

Spaces without a fixed shape (``Text``, ``Graph``, ``Sequence``, ``OneOf``, custom spaces), anywhere in the
tree, are refused with the path of the leaf; gymnasium batches them only as tuples of Python objects, which
no shared array can hold.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import reduce
from typing import Any

import numpy as np
from gymnasium import spaces

from reflow.errors import EnvError

Key = str | int
Path = tuple[Key, ...]
LEAF_SPACES = spaces.Box | spaces.Discrete | spaces.MultiDiscrete | spaces.MultiBinary


@dataclass(frozen=True)
class Leaf:
    """One fixed-shape space of a tree, at ``path`` (the keys and indices that lead to it)."""

    path: Path
    space: spaces.Space[Any]
    shape: tuple[int, ...]
    dtype: np.dtype[Any]

    def where(self, root: str) -> str:
        """How messages name the leaf: ``root['a'][1]``."""
        return root + "".join(f"[{k!r}]" for k in self.path)


def _walk(space: spaces.Space[Any], path: Path, what: str, env_name: str) -> Iterator[Leaf]:
    if isinstance(space, spaces.Dict):
        for key, sub in space.spaces.items():
            yield from _walk(sub, (*path, key), what, env_name)
    elif isinstance(space, spaces.Tuple):
        for i, sub in enumerate(space.spaces):
            yield from _walk(sub, (*path, i), what, env_name)
    elif isinstance(space, LEAF_SPACES):
        assert space.shape is not None and space.dtype is not None
        yield Leaf(path, space, tuple(space.shape), np.dtype(space.dtype))
    else:
        at = f" at {Leaf(path, space, (), np.dtype(bool)).where(what)}" if path else ""
        raise EnvError(f"env {env_name!r}: {what} space has {space}{at}, which has no fixed shape, so the "
                       "env bank cannot share it (it takes Box, Discrete, MultiDiscrete and MultiBinary, in "
                       "Dict and Tuple spaces to any depth; e.g. gymnasium.wrappers.FlattenObservation)")


def _getter(path: Path) -> Callable[[Any], Any]:
    if not path:
        return lambda value: value
    if len(path) == 1:
        return operator.itemgetter(path[0])
    return lambda value: reduce(operator.getitem, path, value)


class SpaceTree:
    """The leaves of ``space`` (``what``: "observation" or "action", for messages about env ``env_name``);
    EnvError if some part of it has no fixed shape."""

    def __init__(self, space: spaces.Space[Any], what: str = "observation", env_name: str = "") -> None:
        self.space = space
        self.what = what
        self.leaves = list(_walk(space, (), what, env_name))
        self.plain = not isinstance(space, spaces.Dict | spaces.Tuple)
        self.getters = [_getter(leaf.path) for leaf in self.leaves]

    def names(self, base: str) -> list[str]:
        """Names of the leaves' arrays in a bank layout: ``base`` for the first, ``base.1``, ... after."""
        return [base] + [f"{base}.{j}" for j in range(1, len(self.leaves))]

    def flatten(self, value: Any) -> list[Any]:
        """The leaves of ``value`` (one element, or a batch, of the space), in the tree's order."""
        return [get(value) for get in self.getters]

    def unflatten(self, leaves: Sequence[Any]) -> Any:
        """``leaves`` put back into the space's structure: dicts for Dict, tuples for Tuple."""
        return leaves[0] if self.plain else _build(self.space, iter(leaves))

    def put(self, outs: Sequence[np.ndarray[Any, Any]], index: int, value: Any) -> None:
        """Write one element ``value`` at row ``index`` of the leaf arrays ``outs``."""
        for out, get in zip(outs, self.getters, strict=True):
            out[index] = get(value)

    def put_rows(self, outs: Sequence[np.ndarray[Any, Any]], lo: int, hi: int, values: Sequence[Any]) -> None:
        """Write elements ``values`` at rows ``lo..hi-1`` of the leaf arrays ``outs`` (one call per leaf)."""
        if self.plain:
            outs[0][lo:hi] = values
            return
        for out, get in zip(outs, self.getters, strict=True):
            out[lo:hi] = [get(v) for v in values]


def _build(space: spaces.Space[Any], it: Iterator[Any]) -> Any:
    if isinstance(space, spaces.Dict):
        return {key: _build(sub, it) for key, sub in space.spaces.items()}
    if isinstance(space, spaces.Tuple):
        return tuple(_build(sub, it) for sub in space.spaces)
    return next(it)
