"""What a reactor declares: ports, timers and actions (the things reactions trigger on, read and write).

Each element belongs to one reactor and has a name unique in it; its *key* is its deterministic path,
``"<reactor path>.<name>"`` (e.g. ``"main.bank[3].filter.out"``). Reading and writing go through the
running reaction's context (``reflow.reactor.context``), never through state on the element itself, so the
same reactor object works under any executor, in this process or in a worker process.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Generic, TypeVar

from reflow.errors import LifecycleError
from reflow.reactor.context import current, maybe_current
from reflow.runtime.program import POLICIES

if TYPE_CHECKING:
    from reflow.reactor.reactor import Reactor

T = TypeVar("T")


class Element:
    """Something declared by a reactor, addressed by its key."""

    kind = "element"

    def __init__(self, owner: Reactor, name: str) -> None:
        self.owner = owner
        self.name = name
        self._key: str | None = None

    @property
    def key(self) -> str:
        """The deterministic path of this element (fixed once the program is assembled)."""
        return self._key if self._key is not None else f"{self.owner.path}.{self.name}"

    @property
    def is_present(self) -> bool:
        """Whether this element has a value (or fired) at the current tag; only inside a reaction."""
        return current(self.key, "is_present").read(self.key)[0]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.key!r})"


class Valued(Element, Generic[T]):
    """An element that carries a value at a tag (ports and actions)."""

    @property
    def value(self) -> T | None:
        """The value present at the current tag, or None; only inside a reaction that declares it."""
        value: T | None = current(self.key, "value").read(self.key)[1]
        return value

    def get(self) -> T:
        """The present value; raises if absent at this tag (check ``is_present`` first)."""
        present, value = current(self.key, "get()").read(self.key)
        if not present:
            raise LifecycleError(f"{self.kind} {self.key} is absent at this tag; check `.is_present` "
                                 "before `.get()`")
        result: T = value
        return result


class Port(Valued[T]):
    """A typed port. ``value`` is ``None`` when the port is absent at the current tag."""

    def __init__(self, owner: Reactor, name: str, dtype: type[T] | type[object] = object) -> None:
        super().__init__(owner, name)
        self.dtype = dtype

    def set(self, value: T) -> None:
        """Write ``value`` at the current tag; only inside a reaction that declares this port as an effect."""
        current(self.key, "set()").write(self.key, value)


class Input(Port[T]):
    """An input port. Unconnected, it is simply absent; a ``required`` one must be connected (or written by
    the containing reactor). A ``mutable`` one hands each reaction its own copy of the value, which the
    reaction may change in place, replace (``inp.value = x``) and send on."""

    kind = "input"

    def __init__(self, owner: Reactor, name: str, dtype: type[T] | type[object] = object,
                 required: bool = False, mutable: bool = False) -> None:
        super().__init__(owner, name, dtype)
        self.required = required
        self.mutable = mutable

    @property
    def value(self) -> T | None:
        """The value present at the current tag, or None; only inside a reaction that declares it."""
        value: T | None = current(self.key, "value").read(self.key)[1]
        return value

    @value.setter
    def value(self, value: T) -> None:
        """Replace this reaction's own copy of a mutable input's value (LF's mutable inputs)."""
        current(self.key, "value = ...").replace_input(self.key, value)


class Output(Port[T]):
    """An output port, written by its reactor's reactions."""

    kind = "output"


class Timer(Element):
    """Fires at ``offset`` ns after start and then every ``period`` ns (``period == 0``: once)."""

    kind = "timer"

    def __init__(self, owner: Reactor, name: str, offset: int = 0, period: int = 0) -> None:
        super().__init__(owner, name)
        if offset < 0 or period < 0:
            raise ValueError(f"timer {name!r} needs offset >= 0 and period >= 0, got {offset}, {period}")
        self.offset = offset
        self.period = period


class LogicalAction(Valued[T]):
    """An event a reaction schedules into the future, ``min_delay + delay`` ns later (0: next microstep).

    With ``min_spacing`` (ns) two events are at least that far apart; ``policy`` says what becomes of one
    scheduled too soon: ``"defer"`` it to the earliest allowed time (default), ``"drop"`` it, ``"replace"``
    the value of the pending event with it, or ``"update"``: drop the pending event and keep the new one."""

    kind = "logical action"
    physical = False

    def __init__(self, owner: Reactor, name: str, min_delay: int = 0, min_spacing: int | None = None,
                 policy: str = "defer") -> None:
        super().__init__(owner, name)
        if min_delay < 0:
            raise ValueError(f"action {name!r} needs min_delay >= 0, got {min_delay}")
        if min_spacing is not None and min_spacing < 0:
            raise ValueError(f"action {name!r} needs min_spacing >= 0, got {min_spacing}")
        if policy not in POLICIES:
            raise ValueError(f"action {name!r}: policy must be one of {', '.join(POLICIES)}, got {policy!r}")
        self.min_delay = min_delay
        self.min_spacing = min_spacing
        self.policy = policy

    def schedule(self, value: T | None = None, delay: int = 0) -> None:
        """Schedule the action from a reaction that declares it as an effect."""
        current(self.key, "schedule()").schedule(self.key, delay, value)


class PhysicalAction(LogicalAction[T]):
    """An event from outside logical time (a sensor thread, an HTTP handler): tagged with physical time.

    ``schedule`` may be called from any thread while the program runs; from inside a reaction it must be a
    declared effect, like a logical action.
    """

    kind = "physical action"
    physical = True

    def schedule(self, value: T | None = None, delay: int = 0) -> None:
        if maybe_current() is not None:
            super().schedule(value, delay)
            return
        runtime = self.owner.runtime_link()
        if runtime is None:
            raise LifecycleError(f"physical action {self.key}.schedule() called while the program is not "
                                 "running; schedule it only between run() start and shutdown")
        runtime.schedule_physical(self.key, value, delay)




class Mode(Element):
    """A mode of a modal reactor (LF's ``mode``): its timers, actions, reactions, contained reactors and
    connections exist only while it is active. Declare what belongs to it inside ``with mode:``; a reaction
    joins it with ``@reaction(..., mode="name")``. A reaction that declares ``"reset(name)"`` or
    ``"history(name)"`` among its effects switches to it with ``mode.set()``, at the end of the tag."""

    kind = "mode"

    def __init__(self, owner: Reactor, name: str, initial: bool = False) -> None:
        super().__init__(owner, name)
        self.initial = initial

    def set(self) -> None:
        """Switch the reactor to this mode at the end of the current tag (by reset or history, as the
        reaction declared)."""
        current(self.key, "set()").switch_mode(self.key)

    def __enter__(self) -> Mode:
        self.owner._enter_mode(self)
        return self

    def __exit__(self, *exc: object) -> None:
        self.owner._leave_mode(self)


class Watchdog(Element):
    """A timeout in physical time (LF's ``watchdog``): a reaction that declares it as an effect starts it with
    ``start()`` (again: restarts it) or ``stop()``s it. If physical time passes the tag's time plus
    ``timeout`` (plus ``start``'s extra) first, it fires: its handler runs, then the reactions it triggers,
    at that time as a tag (or the next microstep if logical time is already past it)."""

    kind = "watchdog"

    def __init__(self, owner: Reactor, name: str, timeout: int, handler: str | None = None,
                 effects: tuple[str, ...] = ()) -> None:
        super().__init__(owner, name)
        if timeout < 0:
            raise ValueError(f"watchdog {name!r} needs timeout >= 0, got {timeout}")
        self.timeout = timeout
        self.handler = handler
        self.effects = effects

    def start(self, extra: int = 0) -> None:
        """Start (or restart) the watchdog: it expires ``timeout + extra`` ns after the current tag's time."""
        current(self.key, "start()").write(self.key, int(extra))

    def stop(self) -> None:
        """Stop the watchdog; it does not fire until started again."""
        current(self.key, "stop()").write(self.key, None)
