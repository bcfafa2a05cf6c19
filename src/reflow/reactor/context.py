"""The reaction context: what a running reaction may read and write, and where its effects are collected.

While a host runs a reaction it installs a ``ReactionContext`` in a context variable (one per thread, so
reactions running in parallel on worker threads never see each other's). Ports, actions and the reactor's
``tag``/``request_stop`` look it up: outside a reaction there is none and they raise ``LifecycleError``.
The context checks every read against the reaction's declared triggers and sources and every write against
its effects, so a reaction cannot touch what the reaction graph does not know about.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextvars import ContextVar, Token
from dataclasses import dataclass, field
from typing import Any

from reflow.errors import EffectError, LifecycleError
from reflow.runtime.executor import Invocation, Result, Scheduled


@dataclass(slots=True)
class ReactionContext:
    """The running reaction's view of the world, and the ``Result`` it fills in. ``values`` are the
    invocation's values, with this reaction's own copies of its ``mutable`` inputs; ``transitions`` maps each
    mode it may switch to onto ``"reset"`` or ``"history"``."""

    invocation: Invocation
    readable: frozenset[str]
    writable: frozenset[str]
    result: Result
    values: Mapping[str, Any]
    mutable: frozenset[str] = frozenset()
    transitions: Mapping[str, str] = field(default_factory=dict)

    def read(self, key: str) -> tuple[bool, Any]:
        """``(present, value)`` of ``key``; a value this reaction wrote reads back as written."""
        if key in self.result.writes:
            return True, self.result.writes[key]
        if key not in self.readable and key not in self.writable:
            raise EffectError(f"reaction {self.invocation.name} reads {key}, which is not among its "
                              "triggers, sources or effects; add it to `sources=` in its @reaction(...)")
        values = self.values
        return (key in values), values.get(key)

    def write(self, key: str, value: Any) -> None:
        self._check(key, "writes to")
        self.result.writes[key] = value

    def replace_input(self, key: str, value: Any) -> None:
        if key not in self.mutable:
            raise EffectError(f"reaction {self.invocation.name} assigns to input {key}, which is not "
                              "mutable; declare it with self.input(..., mutable=True) for a copy of its own")
        assert isinstance(self.values, dict)
        self.values[key] = value

    def switch_mode(self, key: str) -> None:
        kind = self.transitions.get(key)
        if kind is None:
            name = key.rsplit(".", 1)[-1]
            raise EffectError(f"reaction {self.invocation.name} sets mode {key}, which is not among its "
                              f"effects; add 'reset({name})' or 'history({name})' to `effects=`")
        self.result.writes[key] = kind

    def schedule(self, key: str, delay: int, value: Any) -> None:
        self._check(key, "schedules")
        if delay < 0:
            raise ValueError(f"reaction {self.invocation.name} schedules {key} with a negative delay {delay}")
        self.result.schedules.append(Scheduled(key, delay, value))

    def _check(self, key: str, verb: str) -> None:
        if key not in self.writable:
            raise EffectError(f"reaction {self.invocation.name} {verb} {key}, which is not among its "
                              "effects; add it to `effects=` in its @reaction(...)")


_current: ContextVar[ReactionContext | None] = ContextVar("reflow_reaction", default=None)


def current(owner: str, call: str) -> ReactionContext:
    """The running reaction's context; ``owner.call`` names the call for the error outside a reaction."""
    ctx = _current.get()
    if ctx is None:
        raise LifecycleError(f"{owner}.{call} may only be called inside a reaction (this call came from "
                             "outside one)")
    return ctx


def maybe_current() -> ReactionContext | None:
    return _current.get()


def enter(ctx: ReactionContext) -> Token[ReactionContext | None]:
    return _current.set(ctx)


def leave(token: Token[ReactionContext | None]) -> None:
    _current.reset(token)
