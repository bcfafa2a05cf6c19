"""Torsos: the shared body of a network, from observations to a feature vector.

``MLP`` for flat vectors (CartPole, MuJoCo), ``NatureCNN`` for stacks of 84x84 frames (Atari, the DQN
Nature paper's three convolutions and a 512-unit layer). Each infers its input width from the spec it is
first called with and refuses inputs it cannot take, saying which torso to use instead.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence

import torch
from torch import nn

from reflow.components.component import Component, api
from reflow.components.init import linear, orthogonal_
from reflow.components.spaces import Spec
from reflow.errors import ComponentSpaceError

ACTIVATIONS: dict[str, type[nn.Module]] = {"tanh": nn.Tanh, "relu": nn.ReLU}


class MLP(Component):
    """Linear layers of ``hidden`` widths with ``activation`` after each: ``forward(x) -> features``."""

    def __init__(self, name: str, hidden: Sequence[int] = (64, 64), activation: str = "tanh") -> None:
        super().__init__(name)
        if activation not in ACTIVATIONS:
            raise ComponentSpaceError(
                f"MLP {name!r}: unknown activation {activation!r}; choose one of {', '.join(ACTIVATIONS)}"
            )
        self.hidden = tuple(hidden)
        self.activation = activation

    @property
    def out_features(self) -> int:
        return self.hidden[-1]

    def check(self, method: str, specs: Mapping[str, Spec]) -> None:
        x = specs["x"]
        if len(x.shape) != 1 or not x.is_float:
            hint = "use NatureCNN as the torso" if len(x.shape) == 3 else "flatten it and make it float first"
            raise ComponentSpaceError(
                f"component {self.path!r} (MLP), API method {method!r}: input 'x' is "
                f"{x}, but an MLP takes flat float vectors; {hint}"
            )

    def create_variables(self, method: str, specs: Mapping[str, Spec]) -> None:
        gen = self.generator()
        sizes = [specs["x"].shape[0], *self.hidden]
        layers: list[nn.Module] = []
        for a, b in itertools.pairwise(sizes):
            layers += [linear(a, b, gen, 2**0.5), ACTIVATIONS[self.activation]()]
        self.module = nn.Sequential(*layers)

    @api
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert self.module is not None
        out: torch.Tensor = self.module(x)
        return out


class NatureCNN(Component):
    """Conv 32x8x8/4, 64x4x4/2, 64x3x3/1, then a 512-unit layer, on frames ``(C, H, W)``; uint8 frames are
    scaled to [0, 1] inside, so replay buffers keep them as bytes."""

    out_features = 512

    def check(self, method: str, specs: Mapping[str, Spec]) -> None:
        x = specs["x"]
        if len(x.shape) != 3 or min(x.shape[1:]) < 36:
            raise ComponentSpaceError(
                f"component {self.path!r} (NatureCNN), API method {method!r}: input 'x' "
                f"is {x}, but it takes stacks of frames (channels, height, width) of at "
                "least 36x36; use an MLP torso for flat observations"
            )

    def create_variables(self, method: str, specs: Mapping[str, Spec]) -> None:
        gen = self.generator()
        convs = [nn.Conv2d(specs["x"].shape[0], 32, 8, 4), nn.Conv2d(32, 64, 4, 2), nn.Conv2d(64, 64, 3, 1)]
        for c in convs:
            orthogonal_(c.weight, gen, 2**0.5)
            nn.init.zeros_(c.get_parameter("bias"))
        body = nn.Sequential(convs[0], nn.ReLU(), convs[1], nn.ReLU(), convs[2], nn.ReLU(), nn.Flatten())
        with torch.no_grad():
            flat = body(torch.zeros(1, *specs["x"].shape)).shape[1]
        self.module = nn.Sequential(body, linear(flat, 512, gen, 2**0.5), nn.ReLU())

    @api
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert self.module is not None
        if x.dtype == torch.uint8:
            x = x.float() / 255.0
        out: torch.Tensor = self.module(x)
        return out


def torso_for(name: str, obs: Spec, hidden: Sequence[int], activation: str) -> Component:
    """The torso that fits observations of ``obs``: a CNN for frame stacks, an MLP for vectors."""
    return NatureCNN(name) if len(obs.shape) == 3 else MLP(name, hidden, activation)
