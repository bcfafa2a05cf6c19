"""Heads: from a torso's features to what an algorithm needs.

Action distributions keep their parameters as plain tensors and offer the distribution's operations as API
methods (``sample``, ``log_prob``, ``entropy``, ``greedy``), so every step of an agent is a visible call in
its graph. Sampling draws from a caller's ``torch.Generator``, never from global random state.

* ``CategoricalHead``: logits over a ``Discrete`` action space.
* ``DiagGaussianHead``: a mean per action dimension and a state-independent log standard deviation (PPO).
* ``SquashedGaussianHead``: mean and log std from the features, tanh-squashed into the action bounds (SAC).
* ``ValueHead``: one value per state. ``QHead``: one value per discrete action, optionally dueling.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import nn

from reflow.components.component import Component, api
from reflow.components.init import linear
from reflow.components.spaces import Spec
from reflow.errors import ComponentSpaceError

LOG_STD_MIN, LOG_STD_MAX = -20.0, 2.0


class _Head(Component):
    """A head on features of one width; ``action`` is the env's action spec where the head needs one."""

    needs: str = ""  # "discrete" or "box": the action space the head requires

    def __init__(self, name: str, action: Spec | None = None, out_std: float = 1.0) -> None:
        super().__init__(name)
        self.action = action
        self.out_std = out_std

    def check(self, method: str, specs: Mapping[str, Spec]) -> None:
        a = self.action
        kind = type(self).__name__
        if self.needs == "discrete" and (a is None or not a.is_discrete):
            raise ComponentSpaceError(
                f"component {self.path!r} ({kind}) needs a Discrete action space, the "
                f"env's is {a}; use an algorithm for continuous actions (ppo with a "
                "Gaussian head, or sac)"
            )
        if self.needs == "box" and (a is None or a.is_discrete or len(a.shape) != 1):
            raise ComponentSpaceError(
                f"component {self.path!r} ({kind}) needs a flat Box action space, the "
                f"env's is {a}; use a categorical head (ppo) or dqn for Discrete actions"
            )
        for k in ("features",):
            f = specs.get(k)
            if f is not None and (len(f.shape) != 1 or not f.is_float):
                raise ComponentSpaceError(
                    f"component {self.path!r} ({kind}), API method {method!r}: input "
                    f"{k!r} is {f}, but a head takes flat float features from a torso"
                )

    @property
    def n_out(self) -> int:
        assert self.action is not None
        return self.action.n if self.action.n is not None else self.action.size

    def create_variables(self, method: str, specs: Mapping[str, Spec]) -> None:
        self.module = linear(specs["features"].shape[0], self.n_out, self.generator(), self.out_std)


class CategoricalHead(_Head):
    needs = "discrete"

    def __init__(self, name: str, action: Spec | None, out_std: float = 0.01) -> None:
        super().__init__(name, action, out_std)

    @api
    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Logits, shape (batch, n)."""
        assert self.module is not None
        out: torch.Tensor = self.module(features)
        return out

    @api
    def sample(self, logits: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        logp = torch.log_softmax(logits, dim=-1)
        actions = torch.multinomial(logp.exp(), 1, generator=gen).squeeze(1)
        return actions, logp.gather(1, actions.unsqueeze(1)).squeeze(1)

    @api
    def log_prob(self, logits: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        logp = torch.log_softmax(logits, dim=-1)
        return logp.gather(1, actions.long().unsqueeze(1)).squeeze(1)

    @api
    def entropy(self, logits: torch.Tensor) -> torch.Tensor:
        logp = torch.log_softmax(logits, dim=-1)
        return -(logp.exp() * logp).sum(-1)

    @api
    def log_prob_entropy(self, logits: torch.Tensor, actions: torch.Tensor) \
            -> tuple[torch.Tensor, torch.Tensor]:
        """Both at once, from one log-softmax (what a PPO update needs)."""
        logp = torch.log_softmax(logits, dim=-1)
        return logp.gather(1, actions.long().unsqueeze(1)).squeeze(1), -(logp.exp() * logp).sum(-1)

    @api
    def greedy(self, logits: torch.Tensor) -> torch.Tensor:
        return logits.argmax(dim=-1)


class DiagGaussianHead(_Head):
    """``forward(features) -> (mean, log_std)``; the log std is a learned vector, the same for all states."""

    needs = "box"

    def __init__(
        self, name: str, action: Spec | None, out_std: float = 0.01, log_std_init: float = 0.0
    ) -> None:
        super().__init__(name, action, out_std)
        self.log_std_init = log_std_init

    def create_variables(self, method: str, specs: Mapping[str, Spec]) -> None:
        mean = linear(specs["features"].shape[0], self.n_out, self.generator(), self.out_std)
        self.module = nn.ModuleDict({"mean": mean})
        self.module.register_parameter("log_std", nn.Parameter(torch.full((self.n_out,), self.log_std_init)))

    @api
    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        assert isinstance(self.module, nn.ModuleDict)
        mean: torch.Tensor = self.module["mean"](features)
        log_std: torch.Tensor = self.module.get_parameter("log_std")
        return mean, log_std.expand_as(mean)

    @api
    def sample(
        self, mean: torch.Tensor, log_std: torch.Tensor, gen: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        noise = torch.randn(mean.shape, generator=gen)
        actions = mean + log_std.exp() * noise
        return actions, self.log_prob(mean, log_std, actions)

    @api
    def log_prob(self, mean: torch.Tensor, log_std: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        z = (actions - mean) / log_std.exp()
        return (-0.5 * z.pow(2) - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)

    @api
    def entropy(self, log_std: torch.Tensor) -> torch.Tensor:
        return (log_std + 0.5 * math.log(2 * math.pi * math.e)).sum(-1)

    @api
    def log_prob_entropy(self, mean: torch.Tensor, log_std: torch.Tensor, actions: torch.Tensor) \
            -> tuple[torch.Tensor, torch.Tensor]:
        return self.log_prob(mean, log_std, actions), self.entropy(log_std)

    @api
    def greedy(self, mean: torch.Tensor) -> torch.Tensor:
        return mean


class SquashedGaussianHead(_Head):
    """SAC's policy head: ``forward(features) -> (mean, log_std)``, samples squashed by tanh and scaled to the
    action bounds, log-probabilities corrected for the squashing."""

    needs = "box"

    def check(self, method: str, specs: Mapping[str, Spec]) -> None:
        super().check(method, specs)
        if self.action is not None and self.action.low is None:
            raise ComponentSpaceError(
                f"component {self.path!r} (SquashedGaussianHead) squashes actions into "
                f"their bounds, but {self.action} is unbounded; use a DiagGaussianHead"
            )

    def create_variables(self, method: str, specs: Mapping[str, Spec]) -> None:
        assert self.action is not None and self.action.low is not None and self.action.high is not None
        self.module = linear(specs["features"].shape[0], 2 * self.n_out, self.generator(), self.out_std)
        low, high = torch.tensor(self.action.low), torch.tensor(self.action.high)
        self.module.register_buffer("scale", ((high - low) / 2).float())
        self.module.register_buffer("center", ((high + low) / 2).float())

    @api
    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        assert self.module is not None
        mean, log_std = self.module(features).chunk(2, dim=-1)
        return mean, log_std.clamp(LOG_STD_MIN, LOG_STD_MAX)

    def _scaled(self, u: torch.Tensor) -> torch.Tensor:
        assert self.module is not None
        return torch.tanh(u) * self.module.get_buffer("scale") + self.module.get_buffer("center")

    @api
    def sample(
        self, mean: torch.Tensor, log_std: torch.Tensor, gen: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Reparameterised: gradients flow through the sample (SAC's actor loss needs that)."""
        assert self.module is not None
        std = log_std.exp()
        u = mean + std * torch.randn(mean.shape, generator=gen)
        logp = (-0.5 * ((u - mean) / std).pow(2) - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)
        # log |d tanh(u)/du| = 2 (log 2 - u - softplus(-2u)), the numerically stable form
        logp = logp - (2 * (math.log(2) - u - nn.functional.softplus(-2 * u))).sum(-1)
        logp = logp - torch.log(self.module.get_buffer("scale")).sum()
        return self._scaled(u), logp

    @api
    def greedy(self, mean: torch.Tensor) -> torch.Tensor:
        return self._scaled(mean)


class ValueHead(_Head):
    """One value per state: ``forward(features) -> (batch,)``."""

    @property
    def n_out(self) -> int:
        return 1

    @api
    def forward(self, features: torch.Tensor) -> torch.Tensor:
        assert self.module is not None
        out: torch.Tensor = self.module(features).squeeze(-1)
        return out


class QHead(_Head):
    """One value per discrete action: ``forward(features) -> (batch, n)``. Dueling (Wang et al. 2016):
    a state value plus advantages centred on their mean."""

    needs = "discrete"

    def __init__(self, name: str, action: Spec | None, dueling: bool = False, out_std: float = 1.0) -> None:
        super().__init__(name, action, out_std)
        self.dueling = dueling

    def create_variables(self, method: str, specs: Mapping[str, Spec]) -> None:
        width, gen = specs["features"].shape[0], self.generator()
        if self.dueling:
            self.module = nn.ModuleDict(
                {
                    "value": linear(width, 1, gen, self.out_std),
                    "advantage": linear(width, self.n_out, gen, self.out_std),
                }
            )
        else:
            self.module = linear(width, self.n_out, gen, self.out_std)

    @api
    def forward(self, features: torch.Tensor) -> torch.Tensor:
        assert self.module is not None
        if isinstance(self.module, nn.ModuleDict):
            adv = self.module["advantage"](features)
            out: torch.Tensor = self.module["value"](features) + adv - adv.mean(dim=-1, keepdim=True)
            return out
        out = self.module(features)
        return out
