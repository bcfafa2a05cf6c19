"""Components: the logical building blocks of an agent (RLgraph's idea, on PyTorch).

A ``Component`` has a name, sub-components, variables (parameters and buffers, made at build time only)
and API methods (marked ``@api``). Components call each other only through API methods, so calling them
once on example inputs (the build, see ``reflow.components.build``) reveals the whole dataflow: which
method feeds which, with what shapes. That record is a ``reflow.graph.Graph``.

Variables are not made in ``__init__``: a component learns the spaces of its inputs at build time, when
its first API call arrives, and makes its variables then, in ``create_variables`` (an MLP needs its input
width, a Q head the number of actions). ``check`` runs before that, on every call during the build, and
raises ``ComponentSpaceError`` naming the component, the method and the offending input. After the build
an API call is a plain method call with one context-variable lookup on top.

Random initialisation is seeded per component from the agent's seed and the component's path (crc32), so
weights never depend on global random state or on the order components were built in.
"""

from __future__ import annotations

import functools
import zlib
from collections.abc import Callable, Iterator, Mapping
from contextvars import ContextVar
from typing import Any, Protocol, TypeVar, cast

import torch
from torch import nn

from reflow.components.spaces import Spec
from reflow.errors import ComponentError


class Tracer(Protocol):
    """What the build installs to see API calls (``reflow.components.build.Trace``)."""

    def call(
        self, component: Component, method: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any: ...


TRACER: ContextVar[Tracer | None] = ContextVar("reflow_component_tracer", default=None)
F = TypeVar("F", bound=Callable[..., Any])


def api(method: F) -> F:
    """Mark an API method: outside a build it is called as is; during a build the tracer sees the call."""

    @functools.wraps(method)
    def wrapper(self: Component, *args: Any, **kwargs: Any) -> Any:
        tracer = TRACER.get()
        if tracer is None:
            return method(self, *args, **kwargs)
        return tracer.call(self, method, args, kwargs)

    wrapper.__reflow_api__ = True  # type: ignore[attr-defined]
    return cast(F, wrapper)


def building() -> bool:
    """True while a build traces API calls on example inputs: stateful methods (optimizer steps, memory
    inserts, statistics updates) must then leave their state alone."""
    return TRACER.get() is not None


class Component:
    """A named node of an agent's component tree. Subclasses add sub-components in ``__init__`` with
    ``self.add`` and override ``check`` / ``create_variables`` as needed."""

    def __init__(self, name: str) -> None:
        if not name or "/" in name or "." in name:
            raise ComponentError(f"component name {name!r} must be non-empty, without '/' or '.'")
        self.name = name
        self.parent: Component | None = None
        self.components: dict[str, Component] = {}
        self.module: nn.Module | None = None  # parameters and buffers, made by create_variables
        self.seed = 0
        self.variables_created = False
        self.input_specs: dict[str, dict[str, Spec]] = {}  # API method -> input name -> spec (at build)
        self.output_specs: dict[str, tuple[Spec, ...]] = {}

    # -- composition -----------------------------------------------------------------------------------------
    def add(self, *components: C) -> None:
        for c in components:
            if c.name in self.components:
                raise ComponentError(f"component {self.path!r} already has a sub-component named {c.name!r}")
            if c.parent is not None:
                raise ComponentError(
                    f"component {c.path!r} is already part of {c.parent.path!r}; "
                    "a component has one parent (make a second one to use it twice)"
                )
            c.parent = self
            self.components[c.name] = c

    @property
    def path(self) -> str:
        return self.name if self.parent is None else f"{self.parent.path}/{self.name}"

    def walk(self) -> Iterator[Component]:
        """This component and all below it, depth first, in the order they were added."""
        yield self
        for c in self.components.values():
            yield from c.walk()

    def api_methods(self) -> list[str]:
        return [n for n in dir(type(self)) if getattr(getattr(type(self), n), "__reflow_api__", False)]

    # -- build-time hooks ------------------------------------------------------------------------------------
    def check(self, method: str, specs: Mapping[str, Spec]) -> None:
        """Raise ``ComponentSpaceError`` if ``specs`` (input name -> spec) are wrong for ``method``."""

    def create_variables(self, method: str, specs: Mapping[str, Spec]) -> None:
        """Make parameters and buffers (``self.module``) for inputs of ``specs``; called once, at build."""

    def generator(self) -> torch.Generator:
        """A generator for initialisation, seeded from the agent's seed and this component's path."""
        return torch.Generator().manual_seed(self.seed * 1_000_003 + zlib.crc32(self.path.encode()))

    # -- variables -------------------------------------------------------------------------------------------
    def parameters(self) -> list[nn.Parameter]:
        """Trainable parameters of this component and its sub-components, in tree order (no duplicates)."""
        seen: dict[int, nn.Parameter] = {}
        for c in self.walk():
            if c.module is not None:
                for p in c.module.parameters():
                    seen.setdefault(id(p), p)
        return list(seen.values())

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Every variable below this component, keyed ``path.variable`` relative to it."""
        out: dict[str, torch.Tensor] = {}
        for c in self.walk():
            if c.module is not None:
                rel = c.path[len(self.path) :].lstrip("/") or "."
                for k, v in c.module.state_dict().items():
                    out[f"{rel}:{k}"] = v
        return out

    def load_state_dict(self, state: Mapping[str, torch.Tensor]) -> None:
        """Load a ``state_dict`` of a component of the same structure (built for the same spaces)."""
        mine = self.state_dict()
        missing = sorted(set(mine) - set(state))
        extra = sorted(set(state) - set(mine))
        if missing or extra:
            raise ComponentError(
                f"state for {self.path!r} does not match its variables: missing {missing[:4]}, "
                f"unexpected {extra[:4]}"
            )
        with torch.no_grad():
            for k, v in mine.items():
                if v.shape != state[k].shape:
                    raise ComponentError(
                        f"variable {k!r} of {self.path!r} has shape {tuple(v.shape)}, the "
                        f"state has {tuple(state[k].shape)}"
                    )
                v.copy_(state[k])

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """``component(x)`` calls its ``forward`` API method, as for a torch module."""
        forward = getattr(self, "forward", None)
        if forward is None:
            raise ComponentError(
                f"component {self.path!r} ({type(self).__name__}) has no forward method; "
                f"call one of its API methods {self.api_methods()}"
            )
        return forward(*args, **kwargs)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.path!r})"


C = TypeVar("C", bound=Component)
