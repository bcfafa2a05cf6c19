"""Assembly: turn a tree of reactors into a runtime ``Program`` (and check it on the way).

Assembly walks the tree depth first (a reactor before its children, children in the order they were added),
which fixes the program order of reactions and therefore every tie-break in the scheduler. It resolves the
names in each ``@reaction`` to element keys, checks what a reaction may touch (its own inputs, timers and
actions and its children's outputs as triggers or sources; its own outputs and actions and its children's
inputs as effects), flattens connections through the hierarchy into same-tag routes and delayed routes,
and rejects unconnected required inputs. Causality cycles are found when the reaction graph is built
(``reflow.runtime.program.reaction_graph``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from reflow.errors import LifecycleError, PortConnectionError, ReactorError
from reflow.reactor.elements import Element, Input, LogicalAction, Output, Port, Timer
from reflow.reactor.reactor import BoundReaction, Phase, ReactionDef, Reactor
from reflow.runtime.program import (
    SHUTDOWN,
    STARTUP,
    ActionSpec,
    DelayedRoute,
    Program,
    ReactionSpec,
    TimerSpec,
)

DEFAULT_COST = 1e-5  # seconds: a placeholder until costs are measured
_A = {"trigger": "a trigger", "source": "a source", "effect": "an effect"}


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
        return _lower(root, reactors)
    except BaseException:
        set_phase(root, Phase.CONSTRUCTION)
        raise


def _lower(root: Reactor, reactors: list[Reactor]) -> Program:
    reactions: list[ReactionSpec] = []
    timers: list[TimerSpec] = []
    actions: list[ActionSpec] = []
    for r in reactors:
        for e in r._decl.elements.values():
            if isinstance(e, Timer):
                timers.append(TimerSpec(e.key, e.offset, e.period))
            elif isinstance(e, LogicalAction):
                actions.append(ActionSpec(e.key, e.min_delay, e.physical))
        r._bound = []
        for index, d in enumerate(reaction_defs(r)):
            spec, bound = _bind(r, index, d)
            reactions.append(spec)
            r._bound.append(bound)
    same, delayed = _routes(reactors)
    _check_required(reactors, reactions)
    return Program(root.path, reactions, timers, actions, same, delayed, {r.path: r for r in reactors})


def _bind(r: Reactor, index: int, d: ReactionDef) -> tuple[ReactionSpec, BoundReaction]:
    name = f"{r.path}.{d.name}"
    triggers = [k for ref in d.decl.triggers for k in _resolve(r, name, ref, "trigger")]
    sources = [k for ref in d.decl.sources for k in _resolve(r, name, ref, "source")]
    effects = [k for ref in d.decl.effects for k in _resolve(r, name, ref, "effect")]
    if d.decl.on_deadline is not None and not callable(getattr(type(r), d.decl.on_deadline, None)):
        raise ReactorError(f"reaction {name}: deadline handler {d.decl.on_deadline!r} is not a method of "
                           f"{type(r).__name__}")
    spec = ReactionSpec(name, r.path, index, tuple(triggers), tuple(sources), tuple(effects),
                        d.decl.deadline, d.decl.cost if d.decl.cost is not None else DEFAULT_COST)
    bound = BoundReaction(name, d.name, d.decl.on_deadline, frozenset((*triggers, *sources)),
                          frozenset(effects))
    return spec, bound


def _resolve(r: Reactor, reaction: str, ref: str, role: str) -> list[str]:
    """Keys named by ``ref`` in reactor ``r`` for a reaction's trigger/source/effect list."""
    if ref in ("startup", "shutdown"):
        if role != "trigger":
            raise ReactorError(f"reaction {reaction}: {ref!r} can only be a trigger")
        return [STARTUP if ref == "startup" else SHUTDOWN]
    head, _, tail = ref.partition(".")
    if not tail:
        elements = _lookup(r, head, reaction)
        for e in elements:
            ok = {"trigger": not isinstance(e, Output),
                  "source": isinstance(e, Input),
                  "effect": isinstance(e, Output | LogicalAction)}[role]
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
        for e in _lookup(m, tail, reaction):
            ok = isinstance(e, Input) if role == "effect" else isinstance(e, Output)
            if not ok:
                raise ReactorError(f"reaction {reaction}: {e.kind} {e.key} of a contained reactor cannot be "
                                   f"used as {_A[role]} ({_rules()})")
            keys.append(e.key)
    return keys


def _rules() -> str:
    return ("triggers: own inputs, timers, actions, children's outputs; sources: own inputs, children's "
            "outputs; effects: own outputs, actions, children's inputs")


def _lookup(r: Reactor, name: str, reaction: str) -> list[Element]:
    if name in r._decl.multiports:
        return list(r._decl.multiports[name])
    if name in r._decl.elements:
        return [r._decl.elements[name]]
    raise ReactorError(f"reaction {reaction} names {name!r}, which {r.path} does not declare; it declares "
                       f"{sorted([*r._decl.elements, *r._decl.multiports])}")


Routes = dict[str, tuple[str, ...]]
Delayed = dict[str, tuple[DelayedRoute, ...]]


def _routes(reactors: list[Reactor]) -> tuple[Routes, Delayed]:
    direct: dict[str, list[str]] = {}
    delayed: dict[str, list[DelayedRoute]] = {}
    for r in reactors:
        for c in r._decl.connections:
            if c.after is None:
                direct.setdefault(c.src.key, []).append(c.dst.key)
            else:
                delayed.setdefault(c.src.key, []).append(DelayedRoute(c.src.key, c.dst.key, c.after))
    same: dict[str, tuple[str, ...]] = {}
    for start in direct:
        seen: dict[str, None] = {}
        stack = list(reversed(direct[start]))
        while stack:
            p = stack.pop()
            if p in seen or p == start:
                continue
            seen[p] = None
            stack.extend(reversed(direct.get(p, [])))
        same[start] = tuple(seen)
    return same, {k: tuple(v) for k, v in delayed.items()}


def _check_required(reactors: list[Reactor],
                    reactions: list[ReactionSpec]) -> None:
    driven: dict[str, str] = {}
    for r in reactors:
        for c in r._decl.connections:
            driven[c.dst.key] = f"connection from {c.src.key}"
    written = {e: spec.name for spec in reactions for e in spec.effects}
    for key, by in driven.items():
        if key in written:
            raise PortConnectionError(f"port {key} is driven by a {by} and written by reaction "
                                      f"{written[key]}; a port has one driver")
    for r in reactors:
        for e in r._decl.elements.values():
            if isinstance(e, Input) and e.required and e.key not in driven and e.key not in written:
                where = r.parent.path if r.parent else "the containing reactor"
                raise ReactorError(f"required input {e.key} of reactor {r.path} is not connected; connect it "
                                   f"in {where} or declare it with required=False")


def ports_of(r: Reactor) -> list[Port[Any]]:
    """The ports a reactor declares, in declaration order."""
    return [e for e in r._decl.elements.values() if isinstance(e, Port)]
