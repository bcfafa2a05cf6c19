"""What flows between components: a ``Spec`` is the shape and dtype of one item of a batch.

Specs are inferred at build time, from the env's spaces (``from_space``) for an agent's inputs and from the
tensors each API method returns for everything downstream. A spec never includes the batch dimension. A
discrete space keeps its number of categories (``n``), a bounded box its bounds (for squashed actions).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from reflow.errors import ComponentSpaceError


@dataclass(frozen=True)
class Spec:
    """One item's ``shape`` and ``dtype`` (a numpy name); ``n`` for a discrete space, ``low``/``high`` for a
    bounded box (flat tuples)."""

    shape: tuple[int, ...]
    dtype: str = "float32"
    n: int | None = None
    low: tuple[float, ...] | None = None
    high: tuple[float, ...] | None = None

    @property
    def is_discrete(self) -> bool:
        return self.n is not None

    @property
    def is_float(self) -> bool:
        return self.dtype.startswith("float")

    @property
    def size(self) -> int:
        """Number of scalars in one item."""
        return int(np.prod(self.shape)) if self.shape else 1

    @property
    def nbytes(self) -> int:
        return self.size * np.dtype(self.dtype).itemsize

    def describe(self) -> str:
        if self.n is not None:
            return f"Discrete({self.n})"
        if not self.shape:
            return f"{self.dtype} scalar"
        dims = ",".join(str(d) for d in self.shape) + ("," if len(self.shape) == 1 else "")
        return f"Box({dims}) {self.dtype}"

    def __str__(self) -> str:
        return self.describe()


def from_space(space: Any) -> Spec:
    """The spec of a gymnasium space (duck-typed: ``Discrete`` has ``n``, ``Box`` has ``low``/``high``)."""
    if hasattr(space, "n") and np.ndim(space.n) == 0 and not hasattr(space, "nvec"):
        return Spec((), "int64", n=int(space.n))
    if hasattr(space, "low") and hasattr(space, "shape"):
        low, high = np.asarray(space.low, dtype=np.float64), np.asarray(space.high, dtype=np.float64)
        bounded = bool(np.all(np.isfinite(low)) and np.all(np.isfinite(high)))
        return Spec(
            tuple(int(d) for d in space.shape),
            np.dtype(space.dtype).name,
            low=tuple(low.ravel().tolist()) if bounded else None,
            high=tuple(high.ravel().tolist()) if bounded else None,
        )
    raise ComponentSpaceError(
        f"space {space!r} is not supported: components take Box and Discrete spaces "
        "(flatten Dict/Tuple spaces first with gymnasium.wrappers.FlattenObservation)"
    )


def of_tensor(t: torch.Tensor) -> Spec:
    """The spec of one item of batch ``t`` (its first dimension is the batch)."""
    return Spec(tuple(int(d) for d in t.shape[1:]), str(t.dtype).removeprefix("torch."))


def example(spec: Spec, batch: int = 2) -> torch.Tensor:
    """A batch of ``batch`` valid items of ``spec`` (zeros, or the middle of the bounds), to trace a build."""
    if spec.n is not None:
        return torch.zeros(batch, dtype=torch.int64)
    dtype = getattr(torch, spec.dtype)
    if spec.low is not None and spec.high is not None:
        mid = (np.asarray(spec.low) + np.asarray(spec.high)) / 2
        return torch.as_tensor(
            np.broadcast_to(mid.reshape(spec.shape), (batch, *spec.shape)).copy(), dtype=dtype
        )
    return torch.zeros((batch, *spec.shape), dtype=dtype)
