"""Preprocessors: observation normalisation, reward scaling, frame stacking and Atari frame processing.

``ObsNormalizer`` and ``RewardScaler`` keep running statistics (Welford / Chan's parallel update) the way
Stable-Baselines3's ``VecNormalize`` does. The normaliser keeps two sets: ``running`` statistics updated
from every observation the learner sees, and the ``frozen`` ones the policy uses, copied from the running
ones at each publication; so an observation is always normalised the same way by the policy that acted on
it and by the learner that trains on it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from reflow.components.component import Component, api, building
from reflow.components.spaces import Spec
from reflow.errors import ComponentSpaceError


class RunningStats(nn.Module):
    """Mean and variance of a stream of batches. The statistics are float64 buffers (they go into state
    dicts and checkpoints); the arithmetic runs in numpy on their memory: these are a few numbers per env
    step, where each torch op would cost more in dispatch than in arithmetic."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(shape, dtype=torch.float64))
        self.register_buffer("var", torch.ones(shape, dtype=torch.float64))
        self.register_buffer("count", torch.tensor(1e-4, dtype=torch.float64))

    def arrays(self) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any], np.ndarray[Any, Any]]:
        """Numpy views of (mean, var, count); writing them writes the buffers."""
        b = self._buffers
        return b["mean"].numpy(), b["var"].numpy(), b["count"].numpy()  # type: ignore[union-attr]

    def std(self) -> np.ndarray[Any, Any]:
        """sqrt(var + 1e-8), the divisor of normalisation (float64)."""
        return np.sqrt(self.arrays()[1] + 1e-8)

    def update(self, x: torch.Tensor | np.ndarray[Any, Any]) -> None:
        """Chan's parallel update with the batch ``x`` (first axis: the batch)."""
        b = np.asarray(x.detach() if isinstance(x, torch.Tensor) else x, dtype=np.float64)
        n = b.shape[0]
        if n == 1:  # one env: the batch mean is the sample and its variance 0 (same numbers, 2 fewer calls)
            b_mean, b_m2 = b[0], 0.0
        else:
            b_mean, b_m2 = b.mean(0), b.var(0) * n
        mean, var, count_ = self.arrays()
        count = float(count_)
        delta, total = b_mean - mean, count + n
        m2 = var * count + b_m2 + np.square(delta) * count * n / total
        mean += delta * n / total
        var[...] = m2 / total
        count_[...] = total


class ObsNormalizer(Component):
    """``normalize(obs)`` with the frozen statistics, clipped to +-``clip``; ``update(obs)`` the running
    ones; ``freeze()`` copies running to frozen."""

    def __init__(self, name: str, clip: float = 10.0, enabled: bool = True) -> None:
        super().__init__(name)
        self.clip, self.enabled = clip, enabled

    def check(self, method: str, specs: Mapping[str, Spec]) -> None:
        if not specs["obs"].is_float:
            raise ComponentSpaceError(
                f"component {self.path!r} (ObsNormalizer), API method {method!r}: obs is "
                f"{specs['obs']}; normalise float observations only (frames: divide by "
                "255, as NatureCNN does)"
            )

    def create_variables(self, method: str, specs: Mapping[str, Spec]) -> None:
        shape = specs["obs"].shape
        self.module = nn.ModuleDict({"running": RunningStats(shape), "frozen": RunningStats(shape)})

    def _stats(self, which: str) -> RunningStats:
        assert isinstance(self.module, nn.ModuleDict)
        stats = self.module[which]
        assert isinstance(stats, RunningStats)
        return stats

    @api
    def normalize(self, obs: torch.Tensor) -> torch.Tensor:
        """In float64, as ``VecNormalize`` does; in numpy (see ``RunningStats``) unless gradients flow."""
        if not self.enabled:
            return obs
        s = self._stats("frozen")
        if obs.requires_grad:
            mean, std = s.get_buffer("mean"), torch.sqrt(s.get_buffer("var") + 1e-8)
            return ((obs.double() - mean) / std).clamp(-self.clip, self.clip).to(obs.dtype)
        z = (obs.numpy().astype(np.float64) - s.arrays()[0]) / s.std()
        return torch.from_numpy(np.clip(z, -self.clip, self.clip, out=z).astype(obs.numpy().dtype))

    @api
    def update(self, obs: torch.Tensor) -> None:
        if self.enabled and not building():
            self._stats("running").update(obs)

    def freeze(self) -> None:
        self._stats("frozen").load_state_dict(self._stats("running").state_dict())


class RewardScaler(Component):
    """Divides rewards by the running standard deviation of the discounted return (per env, reset at episode
    ends), clipped to +-``clip``: ``VecNormalize``'s reward normalisation."""

    def __init__(self, name: str, gamma: float, clip: float = 10.0) -> None:
        super().__init__(name)
        self.gamma, self.clip = gamma, clip
        self.returns: np.ndarray[Any, Any] | None = None  # float64, per env

    def create_variables(self, method: str, specs: Mapping[str, Spec]) -> None:
        self.module = RunningStats(())

    @api
    def scale(self, rewards: torch.Tensor, dones: torch.Tensor) -> torch.Tensor:
        """Float32 rewards scaled (float64 arithmetic, in numpy like ``RunningStats``)."""
        assert isinstance(self.module, RunningStats)
        r = rewards.numpy().astype(np.float64)
        if not building():
            ret = r if self.returns is None else self.returns * self.gamma + r
            self.module.update(ret)
            self.returns = ret * (1.0 - dones.numpy().astype(np.float64))
        z = r / self.module.std()
        return torch.from_numpy(np.clip(z, -self.clip, self.clip, out=z).astype(np.float32))


class FrameStack(Component):
    """Keeps the last ``k`` observations of each env stacked on a new first axis: ``stack(obs, first)``,
    where ``first`` marks envs whose episode just began (their stack is filled with this observation)."""

    def __init__(self, name: str, k: int) -> None:
        super().__init__(name)
        self.k = k
        self.frames: torch.Tensor | None = None

    @api
    def stack(self, obs: torch.Tensor, first: torch.Tensor) -> torch.Tensor:
        frames = self.frames
        fresh = obs.unsqueeze(1).expand(obs.shape[0], self.k, *obs.shape[1:])
        if frames is None or frames.shape[0] != obs.shape[0]:
            frames = fresh.clone()
        else:
            frames = torch.cat([frames[:, 1:], obs.unsqueeze(1)], dim=1)
            frames[first.bool()] = fresh[first.bool()]
        if not building():
            self.frames = frames
        return frames


class AtariPreprocess(Component):
    """RGB frames ``(H, W, 3)`` uint8 to grayscale ``size x size`` uint8 (area interpolation), as in the
    DQN Nature paper; frame skipping and max-pooling stay in the env (ALE's ``frameskip``)."""

    def __init__(self, name: str, size: int = 84) -> None:
        super().__init__(name)
        self.size = size

    def check(self, method: str, specs: Mapping[str, Spec]) -> None:
        f = specs["frames"]
        if len(f.shape) != 3 or f.shape[2] != 3:
            raise ComponentSpaceError(
                f"component {self.path!r} (AtariPreprocess), API method {method!r}: "
                f"frames are {f}, but it takes RGB frames (height, width, 3)"
            )

    @api
    def process(self, frames: torch.Tensor) -> torch.Tensor:
        rgb = frames.permute(0, 3, 1, 2).float()
        gray = (rgb * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)
        small = nn.functional.interpolate(gray, size=(self.size, self.size), mode="area")
        return small.squeeze(1).round().clamp(0, 255).to(torch.uint8)
