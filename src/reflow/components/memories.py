"""Replay memories: uniform, prioritized (a sum tree) and the n-step adder in front of either.

A memory stores transitions ``(obs, actions, rewards, next_obs, discounts)``, where ``discounts`` is the
factor of the bootstrap term: gamma^k for a k-step transition, 0 where the episode terminated. Storage is
made at build time, in the dtypes of the inputs (frames stay uint8: 28 KB per 4x84x84 observation rather
than 113 KB as float32), and sized from the memory the machine has: a buffer asked to hold more than
``memory_fraction`` of the available memory is shrunk to fit, and one that cannot hold even its
``min_capacity`` raises ``ReplayMemoryError`` with the sizes and what to change, before anything is
allocated.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping

import numpy as np
import torch

from reflow.components.component import Component, api, building
from reflow.components.spaces import Spec
from reflow.errors import ReplayMemoryError

FIELDS = ("obs", "actions", "rewards", "next_obs", "discounts")


def available_memory() -> int:
    """Bytes of memory available to new allocations (MemAvailable; physical memory where unknown)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))


def _gib(n: float) -> str:
    return f"{n / 2**30:.2f} GiB"


class ReplayBuffer(Component):
    """A ring of ``capacity`` transitions sampled uniformly: ``insert(...)`` a batch, ``sample(n, gen)``."""

    def __init__(
        self, name: str, capacity: int, min_capacity: int = 1000, memory_fraction: float = 0.25
    ) -> None:
        super().__init__(name)
        self.requested = capacity
        self.capacity = capacity
        self.min_capacity = min(min_capacity, capacity)
        self.memory_fraction = memory_fraction
        self.storage: dict[str, torch.Tensor] = {}
        self.pos = 0
        self.size = 0

    def create_variables(self, method: str, specs: Mapping[str, Spec]) -> None:
        per_item = sum(specs[k].nbytes for k in FIELDS)
        budget = int(self.memory_fraction * available_memory())
        fit = budget // per_item
        if fit < self.min_capacity:
            shown = ", ".join(f"{k} {specs[k]}" for k in FIELDS)
            raise ReplayMemoryError(
                f"replay buffer {self.path!r} cannot fit: {self.min_capacity} transitions ({shown}: "
                f"{per_item} bytes each) need {_gib(self.min_capacity * per_item)}, but only "
                f"{_gib(budget)} ({self.memory_fraction:.0%} of the {_gib(available_memory())} available) "
                "may be used; lower buffer_size / learning_starts, use fewer envs, or free memory"
            )
        if fit < self.requested:
            warnings.warn(
                f"replay buffer {self.path!r}: {self.requested} transitions would need "
                f"{_gib(self.requested * per_item)}; holding {fit} ({_gib(fit * per_item)}, "
                f"{self.memory_fraction:.0%} of the memory available) instead",
                stacklevel=2,
            )
        self.capacity = min(fit, self.requested)
        self.storage = {
            k: torch.empty((self.capacity, *specs[k].shape), dtype=getattr(torch, specs[k].dtype))
            for k in FIELDS
        }

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.storage.values())

    @api
    def insert(
        self,
        obs: torch.Tensor,
        actions: torch.Tensor,
        rewards: torch.Tensor,
        next_obs: torch.Tensor,
        discounts: torch.Tensor,
    ) -> None:
        """Append a batch of transitions, overwriting the oldest when full (nothing while building)."""
        n = obs.shape[0]
        if building() or n == 0:
            return
        idx = (self.pos + torch.arange(n)) % self.capacity
        for k, v in zip(FIELDS, (obs, actions, rewards, next_obs, discounts), strict=True):
            self.storage[k][idx] = v.to(self.storage[k].dtype)
        self._inserted(idx)
        self.pos = int((self.pos + n) % self.capacity)
        self.size = min(self.size + n, self.capacity)

    def _inserted(self, idx: torch.Tensor) -> None:
        """Hook for prioritized replay."""

    def _indices(self, n: int, gen: torch.Generator, beta: float) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.randint(0, max(self.size, 1), (n,), generator=gen), torch.ones(n)

    @api
    def sample(self, n: int, gen: torch.Generator, beta: float = 0.4) -> dict[str, torch.Tensor]:
        """``n`` transitions, with ``indices`` and importance ``weights`` (all 1 here)."""
        if building() and self.size == 0:  # trace with one stored example of the right shapes
            return {
                **{k: torch.zeros((n, *v.shape[1:]), dtype=v.dtype) for k, v in self.storage.items()},
                "indices": torch.zeros(n, dtype=torch.int64),
                "weights": torch.ones(n),
            }
        idx, weights = self._indices(n, gen, beta)
        return {**{k: v[idx] for k, v in self.storage.items()}, "indices": idx, "weights": weights}


class PrioritizedReplay(ReplayBuffer):
    """Proportional prioritized replay (Schaul et al. 2016): transition i is drawn with probability
    p_i^alpha / sum p^alpha from a sum tree, new transitions get the highest priority seen so far, and
    ``weights`` are the importance corrections (N P(i))^-beta, divided by their maximum."""

    def __init__(
        self,
        name: str,
        capacity: int,
        alpha: float = 0.6,
        eps: float = 1e-6,
        min_capacity: int = 1000,
        memory_fraction: float = 0.25,
    ) -> None:
        super().__init__(name, capacity, min_capacity, memory_fraction)
        self.alpha, self.eps = alpha, eps
        self.tree = SumTree(1)
        self.max_priority = 1.0

    def create_variables(self, method: str, specs: Mapping[str, Spec]) -> None:
        super().create_variables(method, specs)
        self.tree = SumTree(self.capacity)

    def _inserted(self, idx: torch.Tensor) -> None:
        self.tree.set(idx.numpy(), np.full(len(idx), self.max_priority**self.alpha))

    def _indices(self, n: int, gen: torch.Generator, beta: float) -> tuple[torch.Tensor, torch.Tensor]:
        total = self.tree.total()
        u = (
            (torch.arange(n, dtype=torch.float64) + torch.rand(n, generator=gen, dtype=torch.float64))
            * total
            / n
        )
        idx = np.minimum(self.tree.find(u.numpy()), self.size - 1)
        probs = self.tree.get(idx) / total
        w = (self.size * probs) ** -beta
        return torch.as_tensor(idx, dtype=torch.int64), torch.as_tensor(w / w.max(), dtype=torch.float32)

    @api
    def update_priorities(self, indices: torch.Tensor, td_errors: torch.Tensor) -> None:
        """Set the priorities of sampled transitions from their new TD errors."""
        if building():
            return
        p = td_errors.detach().abs().double().numpy() + self.eps
        self.max_priority = max(self.max_priority, float(p.max()))
        self.tree.set(indices.numpy(), p**self.alpha)


class SumTree:
    """A complete binary tree over ``capacity`` leaves whose inner nodes hold the sums of their children;
    ``set`` and ``find`` work on whole batches, one numpy operation per tree level."""

    def __init__(self, capacity: int) -> None:
        self.leaves = 1 << max(0, (capacity - 1).bit_length())
        self.nodes = np.zeros(2 * self.leaves)

    def total(self) -> float:
        return float(self.nodes[1])

    def get(self, idx: np.ndarray) -> np.ndarray:
        out: np.ndarray = self.nodes[idx + self.leaves]
        return out

    def set(self, idx: np.ndarray, values: np.ndarray) -> None:
        if len(idx) == 0:
            return
        pos = idx + self.leaves
        self.nodes[pos] = values
        pos = np.unique(pos // 2)
        while pos[0] >= 1:
            self.nodes[pos] = self.nodes[2 * pos] + self.nodes[2 * pos + 1]
            if pos[0] == 1:
                break
            pos = np.unique(pos // 2)

    def find(self, u: np.ndarray) -> np.ndarray:
        """The leaf index whose prefix-sum interval contains each ``u``."""
        pos = np.ones(len(u), dtype=np.int64)
        u = u.copy()
        while pos[0] < self.leaves:
            left = self.nodes[2 * pos]
            right = u >= left
            u = np.where(right, u - left, u)
            pos = 2 * pos + right
        return pos - self.leaves


class NStep(Component):
    """Turns one-step transitions of each env into n-step ones: R = sum_k gamma^k r_k up to the end of the
    episode or n steps, the observation after the last step used, discount gamma^(k+1) (0 on termination).
    A transition is emitted once its n steps are known (or its episode ended inside them), so the output
    lags n-1 steps behind."""

    def __init__(self, name: str, n: int, gamma: float) -> None:
        super().__init__(name)
        self.n, self.gamma = n, gamma
        self.window: list[tuple[torch.Tensor, ...]] = []

    @api
    def push(
        self,
        obs: torch.Tensor,
        actions: torch.Tensor,
        rewards: torch.Tensor,
        next_obs: torch.Tensor,
        terminations: torch.Tensor,
        dones: torch.Tensor,
    ) -> tuple[torch.Tensor, ...]:
        """Take one step of every env; return the n-step transitions completed (maybe an empty batch)."""
        if self.n == 1:  # the one-step transition itself
            return obs, actions, rewards.float(), next_obs, self.gamma * (1.0 - terminations.float())
        record = (obs, actions, rewards.float(), next_obs, terminations.float(), dones.float())
        window = [*self.window, record][-self.n :]
        if not building():
            self.window = window
        if len(window) < self.n:
            return obs[:0], actions[:0], rewards[:0].float(), next_obs[:0], rewards[:0].float()
        first = window[0]
        alive = torch.ones_like(first[2])
        ret = torch.zeros_like(first[2])
        nxt = first[3].clone()
        disc = torch.zeros_like(first[2])
        for k, (_, _, r, nob, term, done) in enumerate(window):
            ret = ret + alive * self.gamma**k * r
            use = alive.bool()
            nxt[use] = nob[use]
            disc = torch.where(use, self.gamma ** (k + 1) * (1.0 - term), disc)
            alive = alive * (1.0 - done)
        return first[0], first[1], ret, nxt, disc
