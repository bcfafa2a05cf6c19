"""The ``@reaction`` decorator and what it records.

``@reaction(triggers=..., sources=..., effects=...)`` turns a reactor method into a ``ReactionDef``: the
declared names (resolved to element keys when the program is assembled), an optional deadline with its
handler, the mode it belongs to, and a cost for placement. At assembly each reaction of each reactor is bound
to a ``BoundReaction``: plain names and keys only, so that a reactor still pickles into a worker process.
"""

from __future__ import annotations

import types
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from reflow.errors import ReactorError


@dataclass(frozen=True)
class ReactionDecl:
    """What ``@reaction`` records: declared names, an optional deadline (ns, or the name of an attribute
    holding ns) with its handler, the mode it belongs to, and a cost (s)."""

    triggers: tuple[str, ...]
    sources: tuple[str, ...] = ()
    effects: tuple[str, ...] = ()
    deadline: int | str | None = None
    on_deadline: str | None = None
    cost: float | None = None
    mode: str | None = None


class ReactionDef:
    """A reaction method in a reactor class (what ``@reaction`` turns a method into). Read from an instance
    it is the plain bound method, so a reaction body may also be called directly."""

    def __init__(self, fn: Callable[[Any], None], decl: ReactionDecl) -> None:
        self.fn = fn
        self.decl = decl
        self.name: str = fn.__name__
        self.__doc__ = fn.__doc__

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, obj: object, cls: type | None = None) -> Any:
        return self if obj is None else types.MethodType(self.fn, obj)


def _names(x: str | Sequence[str]) -> tuple[str, ...]:
    return (x,) if isinstance(x, str) else tuple(x)


def reaction(*, triggers: str | Sequence[str], sources: str | Sequence[str] = (),
             effects: str | Sequence[str] = (), deadline: int | str | None = None,
             on_deadline: str | None = None, cost: float | None = None,
             mode: str | None = None) -> Callable[[Callable[[Any], None]], ReactionDef]:
    """Declare a reaction.

    ``deadline`` (ns, or the name of an instance attribute holding ns, for a deadline per instance) needs
    ``on_deadline``, the name of a method that runs instead of the body when the reaction starts later than
    ``tag time + deadline`` in physical time. ``mode`` names the mode of the reactor the reaction belongs to.
    ``cost`` is the expected run time in seconds, for placement (default: measured)."""
    if (deadline is None) != (on_deadline is None):
        raise ReactorError("a reaction's `deadline=` and `on_deadline=` go together; give both or neither")
    if isinstance(deadline, int) and deadline < 0:
        raise ReactorError(f"a reaction's deadline must be >= 0 ns, got {deadline}")
    decl = ReactionDecl(_names(triggers), _names(sources), _names(effects), deadline, on_deadline, cost, mode)
    if not decl.triggers:
        raise ReactorError("a reaction needs at least one trigger (a port, timer, action, watchdog, startup, "
                           "shutdown or reset)")

    def wrap(fn: Callable[[Any], None]) -> ReactionDef:
        return ReactionDef(fn, decl)

    return wrap


@dataclass
class BoundReaction:
    """A reaction resolved at assembly: the names of its method (called with ``args``) and deadline handler
    (names, not functions, so that a reactor pickles); the keys it may read and write; its mutable inputs;
    the modes it may switch to (key -> ``"reset"``/``"history"``); and its current deadline (ns)."""

    name: str
    method: str
    handler: str | None
    readable: frozenset[str]
    writable: frozenset[str]
    mutable: frozenset[str] = frozenset()
    transitions: Mapping[str, str] = field(default_factory=dict)
    deadline: int | None = None
    args: tuple[Any, ...] = ()
