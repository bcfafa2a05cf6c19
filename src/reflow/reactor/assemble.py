"""Assembly: turn a tree of reactors into a runtime ``Program`` (and check it on the way).

Assembly walks the tree depth first (a reactor before its children, children in the order they were added),
which fixes the program order of reactions and therefore every tie-break in the scheduler. It resolves the
names in each ``@reaction`` to element keys, checks what a reaction may touch (its own inputs, timers,
actions and watchdogs and its children's outputs as triggers or sources; its own outputs, actions and
watchdogs, its children's inputs and ``reset(mode)``/``history(mode)`` as effects; inside a mode, only what
is declared at reactor level or in the same mode), flattens connections through the hierarchy into same-tag
routes and delayed routes, and rejects unconnected required inputs.

Modes become *scopes*: each reactor, element, reaction and connection gets the innermost mode it lies in (its
own, else the one its reactor was added in, and so on up the tree). Two reactions are added where needed,
ahead of a reactor's own: a watchdog's handler (triggered by the watchdog) and the restore of ``resettable``
state (triggered by a reset of its mode). Causality cycles are found when the reaction graph is built
(``reflow.runtime.program.reaction_graph``).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from typing import Any

from reflow.errors import LifecycleError, PortConnectionError, ReactorError
from reflow.reactor.connections import Connection, exclusive
from reflow.reactor.elements import Element, Input, LogicalAction, Mode, Output, Port, Timer, Watchdog
from reflow.reactor.reaction import BoundReaction, ReactionDef
from reflow.reactor.reactor import Phase, Reactor
from reflow.runtime.program import (
    SHUTDOWN,
    STARTUP,
    ActionSpec,
    DelayedRoute,
    ModeSpec,
    Program,
    ReactionSpec,
    TimerSpec,
    WatchdogSpec,
    scoped,
)

DEFAULT_COST = 1e-5  # seconds: a placeholder until costs are measured
_A = {"trigger": "a trigger", "source": "a source", "effect": "an effect"}
_TRANSITION = re.compile(r"(reset|history)\((\w+)\)")


def walk(root: Reactor) -> Iterator[Reactor]:
    """The reactors of the tree in program order (pre-order, children in the order they were added)."""
    yield root
    for child in root.children:
        yield from walk(child)


def reaction_defs(reactor: Reactor) -> list[ReactionDef]:
    """The reactions of a reactor's class, in declaration order (base classes first; overrides keep place)."""
    found: dict[str, ReactionDef] = {}
    for cls in reversed(type(reactor).__mro__):
        for name, attr in vars(cls).items():
            if isinstance(attr, ReactionDef):
                found[name] = attr
    return list(found.values())


def set_phase(root: Reactor, phase: Phase) -> None:
    for r in walk(root):
        r._phase = phase


def assemble(root: Reactor) -> Program:
    """Check the tree and lower it; afterwards no declaration or connection may be made."""
    if root.parent is not None:
        raise ReactorError(f"reactor {root.path} is contained in another; run the top-level reactor")
    if root._phase is not Phase.CONSTRUCTION:
        raise LifecycleError(f"reactor {root.path} is in phase {root._phase.value}; a reactor program is "
                             "assembled and run once, make a fresh instance to run it again")
    reactors = list(walk(root))
    set_phase(root, Phase.ASSEMBLY)
    try:
        for r in reactors:
            r._path = r.path
            for e in r._decl.elements.values():
                e._key = f"{r._path}.{e.name}"
        return _Lowering(reactors).program(root)
    except BaseException:
        set_phase(root, Phase.CONSTRUCTION)
        raise


class _Lowering:
    """Lowers one tree of reactors; ``scope[path]`` is the innermost mode (key) a reactor sits in."""

    def __init__(self, reactors: list[Reactor]) -> None:
        self.reactors = reactors
        self.scope: dict[str, str | None] = {}
        for r in reactors:
            parent = r.parent
            mode = parent._decl.mode_of.get(r.name) if parent is not None else None
            self.scope[r.path] = mode.key if mode is not None else (
                self.scope[parent.path] if parent is not None else None)

    def element_scope(self, r: Reactor, name: str) -> str | None:
        mode = r._decl.mode_of.get(name)
        return mode.key if mode is not None else self.scope[r.path]

    def program(self, root: Reactor) -> Program:
        reactions: list[ReactionSpec] = []
        p = Program(root.path, reactions, hosts={r.path: r for r in self.reactors})
        for r in self.reactors:
            if r._decl.modes and sum(m.initial for m in r._decl.modes.values()) != 1:
                raise ReactorError(f"reactor {r.path} has modes but none is initial; declare one with "
                                   "self.mode(name, initial=True)")
            for e in r._decl.elements.values():
                scope = self.element_scope(r, e.name)
                if isinstance(e, Timer):
                    p.timers.append(TimerSpec(e.key, e.offset, e.period, scope))
                elif isinstance(e, LogicalAction):
                    p.actions.append(ActionSpec(e.key, e.min_delay, e.physical, e.min_spacing, e.policy,
                                                scope))
                elif isinstance(e, Mode):
                    p.modes.append(ModeSpec(e.key, r.path, e.initial, self.scope[r.path]))
                elif isinstance(e, Watchdog):
                    p.watchdogs.append(WatchdogSpec(e.key, e.timeout, scope))
            r._bound = []  # filled one by one: a reaction's index is its place here
            own = (self.bind(r, d) for d in reaction_defs(r))
            for spec, bound in itertools.chain(self.added_reactions(r), own):
                reactions.append(spec)
                r._bound.append(bound)
        self.routes(p)
        self.check_drivers(reactions)
        return p

    def added_reactions(self, r: Reactor) -> Iterator[tuple[ReactionSpec, BoundReaction]]:
        """The reactions assembly adds ahead of a reactor's own: watchdog handlers and state restores."""
        for e in r._decl.elements.values():
            if isinstance(e, Watchdog) and e.handler is not None:
                if not callable(getattr(type(r), e.handler, None)):
                    raise ReactorError(f"watchdog {e.key}: handler {e.handler!r} is not a method of "
                                       f"{type(r).__name__}")
                scope, mode = self.element_scope(r, e.name), r._decl.mode_of.get(e.name)
                effects = tuple(k for ref in e.effects
                                for k in self.resolve(r, e.key, ref, "effect", scope, mode))
                yield self.spec_and_bound(r, e.handler, e.handler, (e.key,), (), effects, mode, scope)
        for mode_name in r._decl.resettable:
            scope = r._decl.modes[mode_name].key if mode_name is not None else self.scope[r.path]
            if scope is not None:
                name = f"reset_state_{mode_name}" if mode_name else "reset_state"
                yield self.spec_and_bound(r, name, "_reset_state", (scoped(scope, "@reset"),), (), (), None,
                                          scope, args=(mode_name,))

    def spec_and_bound(self, r: Reactor, name: str, method: str, triggers: tuple[str, ...],
                       sources: tuple[str, ...], effects: tuple[str, ...], mode: Mode | None,
                       scope: str | None, *, handler: str | None = None, deadline: int | None = None,
                       cost: float = DEFAULT_COST, args: tuple[Any, ...] = ()) -> tuple[ReactionSpec,
                                                                                       BoundReaction]:
        full = f"{r.path}.{name}"
        mutable = frozenset(k for k in (*triggers, *sources) if _is_mutable(r, k))
        spec = ReactionSpec(full, r.path, len(r._bound), triggers, sources, effects, deadline, cost,
                            mode.key if mode else None, scope)
        bound = BoundReaction(full, method, handler, frozenset((*triggers, *sources)), frozenset(effects),
                              mutable, {}, deadline, args)
        return spec, bound

    def bind(self, r: Reactor, d: ReactionDef) -> tuple[ReactionSpec, BoundReaction]:
        name = f"{r.path}.{d.name}"
        mode = None
        if d.decl.mode is not None:
            mode = r._decl.modes.get(d.decl.mode)
            if mode is None:
                raise ReactorError(f"reaction {name} is declared in mode {d.decl.mode!r}, which {r.path} "
                                   f"does not declare; its modes: {sorted(r._decl.modes)}")
        scope = mode.key if mode is not None else self.scope[r.path]
        triggers = [k for ref in d.decl.triggers for k in self.resolve(r, name, ref, "trigger", scope, mode)]
        sources = [k for ref in d.decl.sources for k in self.resolve(r, name, ref, "source", scope, mode)]
        transitions: dict[str, str] = {}
        effects: list[str] = []
        for ref in d.decl.effects:
            m = _TRANSITION.fullmatch(ref)
            if m is None:
                effects.extend(self.resolve(r, name, ref, "effect", scope, mode))
                continue
            target = r._decl.modes.get(m.group(2))
            if target is None:
                raise ReactorError(f"reaction {name}: {ref!r} names mode {m.group(2)!r}, which {r.path} does "
                                   f"not declare; its modes: {sorted(r._decl.modes)}")
            transitions[target.key] = m.group(1)
            effects.append(target.key)
        if d.decl.on_deadline is not None and not callable(getattr(type(r), d.decl.on_deadline, None)):
            raise ReactorError(f"reaction {name}: deadline handler {d.decl.on_deadline!r} is not a method of "
                               f"{type(r).__name__}")
        cost = d.decl.cost if d.decl.cost is not None else DEFAULT_COST
        spec, bound = self.spec_and_bound(r, d.name, d.name, tuple(triggers), tuple(sources), tuple(effects),
                                          mode, scope, handler=d.decl.on_deadline,
                                          deadline=_deadline(r, name, d.decl.deadline), cost=cost)
        bound.transitions = transitions
        return spec, bound

    def resolve(self, r: Reactor, reaction: str, ref: str, role: str, scope: str | None,
                mode: Mode | None = None) -> list[str]:
        """Keys named by ``ref`` in reactor ``r`` for a reaction's trigger/source/effect list."""
        if ref in ("startup", "shutdown", "reset"):
            if role != "trigger":
                raise ReactorError(f"reaction {reaction}: {ref!r} can only be a trigger")
            if ref == "reset" and scope is None:
                raise ReactorError(f"reaction {reaction}: 'reset' triggers only reactions inside a mode (or "
                                   "inside a reactor contained in one)")
            return [scoped(scope, {"startup": STARTUP, "shutdown": SHUTDOWN, "reset": "@reset"}[ref])]
        head, _, tail = ref.partition(".")
        if not tail:
            elements = _lookup(r, head, reaction)
            _visible(r, reaction, head, mode)
            for e in elements:
                ok = {"trigger": not isinstance(e, Output | Mode),
                      "source": isinstance(e, Input),
                      "effect": isinstance(e, Output | LogicalAction | Watchdog)}[role]
                if not ok:
                    raise ReactorError(f"reaction {reaction}: {e.kind} {e.key} cannot be used as {_A[role]} "
                                       f"by a reaction of its own reactor ({_rules()})")
            return [e.key for e in elements]
        members = r._decl.banks.get(head) or ([r._decl.children[head]] if head in r._decl.children else [])
        if not members:
            raise ReactorError(f"reaction {reaction} names {ref!r}, but {r.path} contains no reactor or bank "
                               f"{head!r}; contained: {sorted(r._decl.children)}")
        keys: list[str] = []
        for m in members:
            _visible(r, reaction, m.name, mode)
            for e in _lookup(m, tail, reaction):
                ok = isinstance(e, Input) if role == "effect" else isinstance(e, Output)
                if not ok:
                    raise ReactorError(f"reaction {reaction}: {e.kind} {e.key} of a contained reactor cannot "
                                       f"be used as {_A[role]} ({_rules()})")
                keys.append(e.key)
        return keys

    def routes(self, p: Program) -> None:
        """Flatten the connections into ``p.routes``, ``p.scoped_routes`` and ``p.delayed``."""
        direct: dict[str, list[tuple[str, str | None]]] = {}
        for r in self.reactors:
            for c in r._decl.connections:
                scope = c.mode.key if c.mode is not None else self.scope[r.path]
                if c.after is None and not c.physical:
                    direct.setdefault(c.src.key, []).append((c.dst.key, scope))
                else:
                    route = DelayedRoute(c.src.key, c.dst.key, c.after or 0, c.physical, scope)
                    p.delayed[c.src.key] = (*p.delayed.get(c.src.key, ()), route)
        for start in direct:
            plain: dict[str, None] = {}
            conditional: dict[str, tuple[str, ...]] = {}
            stack = [(dst, (s,) if s is not None else ()) for dst, s in reversed(direct[start])]
            while stack:
                port, scopes = stack.pop()
                if port == start or port in plain or port in conditional:
                    continue
                if scopes:
                    conditional[port] = scopes
                else:
                    plain[port] = None
                stack.extend((d, (*scopes, s) if s is not None and s not in scopes else scopes)
                             for d, s in reversed(direct.get(port, [])))
            if plain:
                p.routes[start] = tuple(plain)
            if conditional:
                p.scoped_routes[start] = tuple(conditional.items())

    def check_drivers(self, reactions: list[ReactionSpec]) -> None:
        """A port is driven by one connection or written by reactions (per mode); required inputs are."""
        driven: dict[str, list[Connection]] = {}
        for r in self.reactors:
            for c in r._decl.connections:
                driven.setdefault(c.dst.key, []).append(c)
        modes = {m.key: m for r in self.reactors for m in r._decl.modes.values()}
        for spec in reactions:
            for key in spec.effects:
                for c in driven.get(key, ()):
                    if not exclusive(c.mode, modes.get(spec.mode or "")):
                        raise PortConnectionError(
                            f"port {key} is driven by a connection from {c.src.key} and written by reaction "
                            f"{spec.name}; a port has one driver (per mode)")
        written = {key for spec in reactions for key in spec.effects}
        for r in self.reactors:
            for e in r._decl.elements.values():
                if isinstance(e, Input) and e.required and e.key not in driven and e.key not in written:
                    where = r.parent.path if r.parent else "the containing reactor"
                    raise ReactorError(f"required input {e.key} of reactor {r.path} is not connected; "
                                       f"connect it in {where} or declare it without required=True")


def _deadline(r: Reactor, reaction: str, deadline: int | str | None) -> int | None:
    """A declared deadline: ns, or the name of an attribute of the instance holding ns."""
    if not isinstance(deadline, str):
        return deadline
    value = getattr(r, deadline, None)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ReactorError(f"reaction {reaction}: deadline={deadline!r} names attribute {deadline!r} of "
                           f"{r.path}, which must hold a deadline in ns (an int >= 0); it holds {value!r}")
    return value


def _is_mutable(r: Reactor, key: str) -> bool:
    e = r._decl.elements.get(key.rsplit(".", 1)[-1])
    return isinstance(e, Input) and e.mutable and e.key == key


def _visible(r: Reactor, reaction: str, name: str, mode: Mode | None) -> None:
    """Inside a mode a reaction sees what is at reactor level or in its own mode; outside, only the former."""
    where = r._decl.mode_of.get(name)
    if where is not None and where is not mode:
        raise ReactorError(f"reaction {reaction} names {name!r}, which is declared in mode {where.name!r} of "
                           f"{r.path}; only reactions of that mode (@reaction(..., mode={where.name!r})) may "
                           "use it")


def _rules() -> str:
    return ("triggers: own inputs, timers, actions, watchdogs, children's outputs; sources: own inputs, "
            "children's outputs; effects: own outputs, actions, watchdogs, children's inputs, "
            "reset(mode)/history(mode)")


def _lookup(r: Reactor, name: str, reaction: str) -> list[Element]:
    if name in r._decl.multiports:
        return list(r._decl.multiports[name])
    if name in r._decl.elements:
        return [r._decl.elements[name]]
    raise ReactorError(f"reaction {reaction} names {name!r}, which {r.path} does not declare; it declares "
                       f"{sorted([*r._decl.elements, *r._decl.multiports])}")


def ports_of(r: Reactor) -> list[Port[Any]]:
    """The ports a reactor declares, in declaration order."""
    return [e for e in r._decl.elements.values() if isinstance(e, Port)]
