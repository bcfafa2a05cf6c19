"""What a vector env refuses, as gymnasium's ``SyncVectorEnv`` refuses it, checked before anything runs.

gymnasium iterates over the batch of actions (a scalar raises TypeError), zips it with the envs (a batch of
another length raises ValueError) and lets each env judge its own action (CartPole asserts that it is in its
space). The bank writes the batch into a shared typed array instead, where a wrong batch would be quietly
broadcast or cast (one action stepping all four envs; 0.7 becoming 0), so it checks the batch first, with
errors that are gymnasium's classes too (``EnvArgumentError`` is a ValueError, ``EnvArgumentTypeError`` a
TypeError). ``reset_mask`` and seeds are checked with gymnasium's own messages.

The checks cost well under a microsecond per step: a shape comparison and a dtype kind.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NoReturn

import numpy as np
from gymnasium import spaces

from reflow.errors import EnvArgumentError, EnvArgumentTypeError
from reflow.rl.envs.space_tree import SpaceTree

_INTEGRAL = "iub"  # dtype kinds a Discrete, MultiDiscrete or MultiBinary action may have
_INTEGRAL_SPACES = spaces.Discrete | spaces.MultiDiscrete | spaces.MultiBinary


class ActionCheck:
    """Checks batches of actions for ``num_envs`` envs of action space ``single``; a Dict or Tuple space
    leaf by leaf (a batch of one is a dict / tuple of arrays, as gymnasium's ``batch_space`` makes it)."""

    def __init__(self, single: spaces.Space[Any], num_envs: int) -> None:
        self.num_envs = num_envs
        self.tree = SpaceTree(single, "action")
        self.shapes = [(num_envs, *leaf.shape) for leaf in self.tree.leaves]
        self.integral = [isinstance(leaf.space, _INTEGRAL_SPACES) for leaf in self.tree.leaves]
        self.shape, self.single = self.shapes[0], single

    def __call__(self, actions: Any) -> Any:
        """``actions`` as an array of the batch's shape (a dict / tuple of them for a Dict or Tuple space);
        raises where gymnasium would."""
        if self.tree.plain:
            a = np.asarray(actions)
            if a.shape == self.shape and a.dtype.kind in (_INTEGRAL if self.integral[0] else "iufb"):
                return a
            self._refuse(0, a, actions)
        try:
            leaves = self.tree.flatten(actions)
        except (KeyError, IndexError, TypeError, ValueError) as e:
            raise EnvArgumentTypeError(f"step takes a batch of {self.num_envs} actions of {self.single} (a "
                                       f"{type(self.tree.unflatten(self.shapes)).__name__} of arrays, one "
                                       f"row per env), got {type(actions).__name__} {actions!r} "
                                       f"({type(e).__name__}: {e})") from None
        checked = []
        for j, given in enumerate(leaves):
            a = np.asarray(given)
            if a.shape != self.shapes[j] or a.dtype.kind not in (_INTEGRAL if self.integral[j] else "iufb"):
                self._refuse(j, a, given)
            checked.append(a)
        return self.tree.unflatten(checked)

    def _refuse(self, j: int, a: np.ndarray[Any, Any], given: Any) -> NoReturn:
        leaf, shape, n = self.tree.leaves[j], self.shapes[j], self.num_envs
        what = leaf.where("actions")
        if a.ndim == 0:
            raise EnvArgumentTypeError(f"step takes a batch of {n} {what} (shape {shape}, one per env), got "
                                       f"the scalar {given!r}")
        if a.shape[0] != n:
            raise EnvArgumentError(f"step got {a.shape[0]} {what} for {n} envs (shape {a.shape}; expected "
                                   f"{shape})")
        if a.shape != shape:
            raise EnvArgumentError(f"step got {what} of shape {a.shape}; {n} actions of {leaf.space} make "
                                   f"shape {shape}")
        kind = "integers" if self.integral[j] else "numbers"
        raise EnvArgumentTypeError(f"step got {what} of dtype {a.dtype}; actions of {leaf.space} must be "
                                   f"{kind} (e.g. {leaf.space.dtype})")


def check_reset_mask(mask: Any, num_envs: int) -> np.ndarray[Any, Any]:
    """``options["reset_mask"]``: a boolean array of one flag per env, some set (gymnasium's checks)."""
    if not isinstance(mask, np.ndarray):
        raise EnvArgumentTypeError(f"`options['reset_mask']` must be a numpy array, got {type(mask)}")
    if mask.shape != (num_envs,):
        raise EnvArgumentError(f"`options['reset_mask']` must have shape `({num_envs},)`, got {mask.shape}")
    if mask.dtype != np.bool_:
        raise EnvArgumentTypeError(f"`options['reset_mask']` must have `dtype=np.bool_`, got {mask.dtype}")
    if not np.any(mask):
        raise EnvArgumentError("`options['reset_mask']` must contain a boolean array with at least one True "
                               f"value, got reset_mask={mask}")
    return mask


def env_seeds(seed: int | Sequence[int | None] | None, num_envs: int) -> list[int | None] | None:
    """One seed per env from ``reset(seed=...)``: s gives s, s+1, ...; a list gives one each; None none."""
    if seed is None:
        return None
    if isinstance(seed, int | np.integer):
        return [int(seed) + i for i in range(num_envs)]
    seeds = list(seed)
    if len(seeds) != num_envs:
        raise EnvArgumentError(f"If seeds are passed as a list the length must match num_envs={num_envs} but "
                               f"got length={len(seeds)}.")
    return seeds


def per_env_values(values: Any, num_envs: int) -> list[Any]:
    """``set_attr``'s values: a list or tuple gives one per env, anything else goes to every env."""
    if not isinstance(values, list | tuple):
        return [values] * num_envs
    if len(values) != num_envs:
        raise EnvArgumentError("Values must be a list or tuple with length equal to the number of "
                               f"environments. Got `{len(values)}` values for {num_envs} environments.")
    return list(values)
