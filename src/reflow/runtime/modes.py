"""Modes at run time: which modes are active, and what a mode transition does to pending events.

Policy, after Lingua Franca's modal reactors (reactor-c ``modes.c``; the tests under modal_models/):

* Every modal reactor is in exactly one of its modes, its initial one at start. A mode is *active* when its
  reactor is in it and the mode the reactor sits in (its scope) is active too. Reactions, timers, actions,
  watchdogs and connections of an inactive mode do nothing.
* A reaction requests a transition by setting a mode it declared as ``reset(m)`` or ``history(m)``. All
  requests of a tag take effect together at its end (the last request of a reactor wins), so every reaction
  of the tag sees the modes the tag began with.
* Events of a mode that becomes inactive are *suspended*, remembering how long they still had to wait.
  Entering a mode by ``history`` resumes them with that remaining delay. Entering by ``reset`` discards
  them and restarts its timers from their offsets; the reset reaches down through every reactor inside the
  mode, which re-enter their initial modes.
* Startup reactions of a mode run when it is first entered, reset reactions whenever it is entered by a
  reset, both one microstep after the transition; shutdown reactions of every mode that was ever entered run
  at shutdown, active or not.
"""

from __future__ import annotations

from dataclasses import dataclass

from reflow.runtime.program import SHUTDOWN, STARTUP, ModeSpec, Program, scoped
from reflow.runtime.tag import Tag

RESET, HISTORY = "reset", "history"


@dataclass
class Suspended:
    """An event put aside while its mode is inactive: kind, key and value, and how long it had left."""

    remaining: int
    kind: int
    key: str
    value: object


class Modes:
    """The mode state of one run. ``active`` holds the active modes; ``None`` (no mode) is always active."""

    def __init__(self, program: Program) -> None:
        self.specs = {m.key: m for m in program.modes}
        self.initial = {m.reactor: m.key for m in program.modes if m.initial}
        self.current = dict(self.initial)  # modal reactor -> the mode it is in
        # modal reactors outermost first, so that activity and resets flow downwards
        depth = {m.key: self._depth(m) for m in program.modes}
        self.reactors = sorted(self.current, key=lambda r: depth[self.current[r]])
        self.active: set[str | None] = {None}
        self.entered: set[str] = set()  # modes ever active (their shutdown reactions run)
        self.requests: dict[str, tuple[str, str]] = {}  # reactor -> (mode, kind), this tag
        self.suspended: list[Suspended] = []
        self._recompute()

    def _depth(self, mode: ModeSpec) -> int:
        d, scope = 0, mode.scope
        while scope is not None:
            d, scope = d + 1, self.specs[scope].scope
        return d

    def _recompute(self) -> None:
        active: set[str | None] = {None}
        for r in self.reactors:
            mode = self.current[r]
            if self.specs[mode].scope in active:
                active.add(mode)
        self.active = active

    def is_active(self, scope: str | None) -> bool:
        return scope in self.active

    def inside(self, scope: str | None, modes: set[str]) -> bool:
        """Whether ``scope`` is one of ``modes`` or lies (through reactors) inside one of them."""
        while scope is not None:
            if scope in modes:
                return True
            scope = self.specs[scope].scope
        return False

    def startup_keys(self) -> list[str]:
        """The modal startup triggers to fire at (0, 0): those of the initially active modes."""
        first = sorted(m for m in self.active if m is not None)
        self.entered.update(first)
        return [scoped(m, STARTUP) for m in first]

    def shutdown_keys(self) -> list[str]:
        return [scoped(m, SHUTDOWN) for m in sorted(self.entered)]

    def request(self, mode: str, kind: str) -> None:
        self.requests[self.specs[mode].reactor] = (mode, kind)

    def transition(self) -> tuple[set[str], list[str]]:
        """Apply this tag's requests. Returns the modes entered by a reset (directly, or as the initial mode
        of a reactor inside one) and the startup/reset triggers to fire one microstep later."""
        reset: set[str] = set()
        for r in self.reactors:  # outermost first: a reset reaches the reactors inside the mode it enters
            if self.inside(self.specs[self.current[r]].scope, reset):
                target, kind = self.initial[r], RESET
            elif r in self.requests:
                target, kind = self.requests[r]
            else:
                continue
            self.current[r] = target
            if kind == RESET:
                reset.add(target)
        self.requests.clear()
        self._recompute()
        fire: list[str] = []
        for m in sorted(k for k in self.active if k is not None):
            if m not in self.entered:
                self.entered.add(m)
                fire.append(scoped(m, STARTUP))
            if m in reset:
                fire.append(scoped(m, "@reset"))
        return reset, fire

    def resume(self, now: Tag, scope_of: dict[str, str | None]) -> list[tuple[Tag, Suspended]]:
        """Take out the suspended events whose mode is active again, each with the tag it is now due at."""
        keep: list[Suspended] = []
        due: list[tuple[Tag, Suspended]] = []
        for s in self.suspended:
            if scope_of.get(s.key) in self.active:
                due.append((Tag(now.time + s.remaining, 0) if s.remaining > 0 else now.delay(0), s))
            else:
                keep.append(s)
        self.suspended = keep
        return due
