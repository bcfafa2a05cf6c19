"""The ``Reactor`` base class.

A reactor declares, in its ``__init__``, its ports, timers, actions, modes, watchdogs and contained reactors
(with ``self.input``, ``self.output``, ``self.timer``, ``self.logical_action``, ``self.mode``,
``self.watchdog``, ``self.add``, ``self.bank``, ...) and the connections between its children
(``self.connect``). Whatever is declared inside ``with self.some_mode:`` belongs to that mode. Its reactions
are methods decorated with ``@reaction(triggers=..., sources=..., effects=...)``
(``reflow.reactor.reaction``), naming declared elements by their declared names (``"in"``, ``"child.out"``,
``"bank.out"`` for every member of a bank, ``"startup"``, ``"shutdown"``, ``"reset"``); they run in the
order they are written in the class.

Every API call is checked against the program's lifecycle phase, as in reactor-cpp: declarations and
connections belong to *construction* (before the program is assembled), port reads/writes and
``request_stop`` to a running reaction, and a reactor is run at most once. A call in the wrong phase raises
``LifecycleError`` naming the call.
"""

from __future__ import annotations

import copy
import enum
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from reflow.errors import LifecycleError, PortConnectionError, ReactorError
from reflow.reactor.connections import Connection, check_connection, exclusive, pair
from reflow.reactor.context import ReactionContext, current, enter, leave, maybe_current
from reflow.reactor.elements import (
    Element,
    Input,
    LogicalAction,
    Mode,
    Output,
    PhysicalAction,
    Port,
    Timer,
    Watchdog,
)
from reflow.reactor.reaction import BoundReaction, ReactionDef
from reflow.runtime.executor import Invocation, Result
from reflow.runtime.program import DEADLINE
from reflow.runtime.tag import Tag

if TYPE_CHECKING:
    from reflow.runtime.scheduler import Scheduler

R = TypeVar("R", bound="Reactor")


class Phase(enum.Enum):
    """Lifecycle of a reactor program."""

    CONSTRUCTION = "construction"
    ASSEMBLY = "assembly"
    RUNNING = "running"
    SHUTDOWN = "shutdown"
    DONE = "done"


@dataclass
class _Declared:
    elements: dict[str, Element] = field(default_factory=dict)
    multiports: dict[str, list[Port[Any]]] = field(default_factory=dict)
    children: dict[str, Reactor] = field(default_factory=dict)
    banks: dict[str, list[Reactor]] = field(default_factory=dict)
    connections: list[Connection] = field(default_factory=list)
    modes: dict[str, Mode] = field(default_factory=dict)
    mode_of: dict[str, Mode] = field(default_factory=dict)  # element or child name -> the mode it is in
    resettable: dict[str | None, dict[str, Any]] = field(default_factory=dict)  # mode name -> initial state
    current_mode: Mode | None = None


class Reactor:
    """Base class of every reactor. Subclasses call ``super().__init__(name)`` first."""

    def __init__(self, name: str | None = None) -> None:
        self.name = name if name is not None else type(self).__name__.lower()
        self.parent: Reactor | None = None
        self.bank_index = 0
        self._decl = _Declared()
        self._phase = Phase.CONSTRUCTION
        self._path: str | None = None
        self._bound: list[BoundReaction] = []
        self._runtime: Scheduler | None = None

    # -- construction -------------------------------------------------------------------------------------
    def _constructing(self, call: str) -> None:
        if self._phase is not Phase.CONSTRUCTION:
            raise LifecycleError(f"{self.path}.{call} called in phase {self._phase.value}; declarations and "
                                 "connections belong in the reactor's __init__, before the program runs")

    def _declare(self, call: str, element: Element) -> None:
        self._constructing(call)
        if element.name in self._decl.elements or element.name in self._decl.children:
            raise ReactorError(f"reactor {self.path} already declares {element.name!r}; names must be unique")
        self._decl.elements[element.name] = element
        if self._decl.current_mode is not None:
            self._decl.mode_of[element.name] = self._decl.current_mode

    def input(self, name: str, dtype: type[Any] = object, *, required: bool = False,
              mutable: bool = False) -> Input[Any]:
        """Declare an input port. Unconnected it is absent (``required``: it must be connected);
        ``mutable``: each reaction gets its own copy of the value to change and send on."""
        port: Input[Any] = Input(self, name, dtype, required, mutable)
        self._declare(f"input({name!r})", port)
        return port

    def output(self, name: str, dtype: type[Any] = object) -> Output[Any]:
        """Declare an output port."""
        port: Output[Any] = Output(self, name, dtype)
        self._declare(f"output({name!r})", port)
        return port

    def input_multiport(self, name: str, width: int, dtype: type[Any] = object, *, required: bool = False,
                        mutable: bool = False) -> list[Input[Any]]:
        """Declare ``width`` inputs ``name[0]`` ... ``name[width-1]``; ``name`` in a reaction means all."""
        ports = [self.input(f"{name}[{i}]", dtype, required=required, mutable=mutable) for i in range(width)]
        self._decl.multiports[name] = list(ports)
        return ports

    def output_multiport(self, name: str, width: int, dtype: type[Any] = object) -> list[Output[Any]]:
        """Declare ``width`` outputs ``name[0]`` ... ``name[width-1]``; ``name`` in a reaction means all."""
        ports = [self.output(f"{name}[{i}]", dtype) for i in range(width)]
        self._decl.multiports[name] = list(ports)
        return ports

    def timer(self, name: str, offset: int = 0, period: int = 0) -> Timer:
        """Declare a timer: first at ``offset`` ns, then every ``period`` ns (0: fire once)."""
        t = Timer(self, name, offset, period)
        self._declare(f"timer({name!r})", t)
        return t

    def logical_action(self, name: str, min_delay: int = 0, *, min_spacing: int | None = None,
                       policy: str = "defer") -> LogicalAction[Any]:
        """Declare a logical action with a minimum delay in ns, and optionally a minimum spacing between
        its events with the ``policy`` for one that comes too soon (``defer``, ``drop``, ``replace``,
        ``update``)."""
        a: LogicalAction[Any] = LogicalAction(self, name, min_delay, min_spacing, policy)
        self._declare(f"logical_action({name!r})", a)
        return a

    def physical_action(self, name: str, min_delay: int = 0, *, min_spacing: int | None = None,
                        policy: str = "defer") -> PhysicalAction[Any]:
        """Declare a physical action (scheduled from other threads, tagged with physical time)."""
        a: PhysicalAction[Any] = PhysicalAction(self, name, min_delay, min_spacing, policy)
        self._declare(f"physical_action({name!r})", a)
        return a

    def mode(self, name: str, *, initial: bool = False) -> Mode:
        """Declare a mode (exactly one per modal reactor is ``initial``); use it as ``with mode:`` to
        declare what belongs to it."""
        if initial and any(m.initial for m in self._decl.modes.values()):
            raise ReactorError(f"reactor {self.path} already has an initial mode; exactly one is initial")
        m = Mode(self, name, initial)
        self._declare(f"mode({name!r})", m)
        self._decl.modes[name] = m
        return m

    def watchdog(self, name: str, timeout: int, *, handler: str | None = None,
                 effects: str | Sequence[str] = ()) -> Watchdog:
        """Declare a watchdog of ``timeout`` ns of physical time. ``handler`` names a method that runs when
        it fires (before the reactions it triggers), which may schedule the actions named in ``effects``."""
        w = Watchdog(self, name, timeout, handler, (effects,) if isinstance(effects, str) else tuple(effects))
        self._declare(f"watchdog({name!r})", w)
        return w

    def resettable(self, **state: Any) -> None:
        """Set state attributes and restore them (a deep copy of these values) whenever their mode is
        entered by a reset transition (LF's ``reset state``): the mode of the ``with`` block this is called
        in, else the mode the reactor sits in."""
        self._constructing("resettable(...)")
        mode = self._decl.current_mode
        self._decl.resettable.setdefault(mode.name if mode else None, {}).update(copy.deepcopy(state))
        for name, value in state.items():
            setattr(self, name, value)

    def _enter_mode(self, mode: Mode) -> None:
        self._constructing(f"with {mode.name}")
        if self._decl.current_mode is not None:
            raise ReactorError(f"reactor {self.path}: `with {mode.name}` inside `with "
                               f"{self._decl.current_mode.name}`; modes of one reactor do not nest (put a "
                               "modal reactor inside the mode instead)")
        self._decl.current_mode = mode

    def _leave_mode(self, mode: Mode) -> None:
        self._decl.current_mode = None

    def add(self, child: R) -> R:
        """Contain ``child`` (named by its ``name``); returns it."""
        self._constructing(f"add({child.name!r})")
        if child.parent is not None:
            raise ReactorError(f"reactor {child.path} is already contained in {child.parent.path}")
        if child.name in self._decl.children or child.name in self._decl.elements:
            raise ReactorError(f"reactor {self.path} already has a member named {child.name!r}")
        child.parent = self
        self._decl.children[child.name] = child
        if self._decl.current_mode is not None:
            self._decl.mode_of[child.name] = self._decl.current_mode
        return child

    def bank(self, name: str, width: int, factory: Callable[[int], R]) -> list[R]:
        """Contain a bank of ``width`` reactors ``name[i]`` made by ``factory(i)``; ``bank_index`` is i."""
        self._constructing(f"bank({name!r})")
        members: list[R] = []
        for i in range(width):
            member = factory(i)
            member.name = f"{name}[{i}]"
            member.bank_index = i
            members.append(self.add(member))
        self._decl.banks[name] = list(members)
        return members

    def connect(self, src: Port[Any] | Sequence[Port[Any]], dst: Port[Any] | Sequence[Port[Any]], *,
                after: int | None = None, physical: bool = False, repeat: bool = False) -> None:
        """Connect ports: one to one, a list to a list of the same width, or one to many.

        ``after`` (ns) delays the values by that much (0: the next microstep) and breaks causality loops;
        ``physical`` stamps them with the physical time of the write instead (LF's ``~>``, plus ``after``);
        ``repeat`` repeats the source list to cover the destinations (LF's ``(a, b)+ -> ...``). Lists of ports
        from ``interleaved(...)`` connect a bank of multiports channel by channel.
        """
        first = src if isinstance(src, Port) else (src[0] if src else "[]")
        last = dst if isinstance(dst, Port) else (dst[0] if dst else "[]")
        self._constructing(f"connect({first} -> {last})")
        if after is not None and after < 0:
            raise PortConnectionError(f"in {self.path}: `after` must be >= 0 ns, got {after}")
        mode = self._decl.current_mode
        drivers = {c.dst: c for c in self._decl.connections}
        for s, d in pair(self, src, dst, repeat):
            check_connection(self, s, d)
            other = drivers.get(d)
            if other is not None and not exclusive(other.mode, mode):
                raise PortConnectionError(f"in {self.path}: {d.key} is already driven by another connection; "
                                          "a port has at most one driver (per mode)")
            drivers[d] = Connection(s, d, after, physical, mode)
            self._decl.connections.append(drivers[d])

    # -- running ------------------------------------------------------------------------------------------
    @property
    def tag(self) -> Tag:
        """The current tag; only inside a reaction."""
        return current(self.path, "tag").invocation.tag

    @property
    def logical_time(self) -> int:
        """Logical nanoseconds since start at the current tag; only inside a reaction."""
        return current(self.path, "logical_time").invocation.tag.time

    def physical_time(self) -> int:
        """Physical nanoseconds since the program started; inside a reaction (in any process), or from any
        thread of the scheduler's process while the program runs. (The rest of LF's time API, absolute
        times and the start time, is in ``reflow.reactor.clock``.)"""
        ctx = maybe_current()
        if ctx is not None:
            return time.time_ns() - ctx.invocation.start_time
        runtime = self.runtime_link()
        if runtime is None:
            raise LifecycleError(f"{self.path}.physical_time() called while the program is not running")
        return runtime.physical_time()

    def update_deadline(self, deadline: int) -> None:
        """Set the running reaction's deadline (ns), for ``check_deadline`` now and its next invocations."""
        ctx = current(self.path, "update_deadline()")
        if deadline < 0:
            raise ValueError(f"reaction {ctx.invocation.name}: a deadline must be >= 0 ns, got {deadline}")
        bound = self._bound[ctx.invocation.reaction]
        if bound.deadline is None:
            raise ReactorError(f"reaction {bound.name} has no deadline to update; declare one with "
                               "@reaction(..., deadline=..., on_deadline=...)")
        bound.deadline = deadline
        ctx.result.writes[f"{bound.name}{DEADLINE}"] = deadline

    def check_deadline(self, invoke_handler: bool = True) -> bool:
        """Whether the running reaction's deadline has passed by now (physical time since start > tag time +
        deadline); if so and ``invoke_handler`` (the default, as in LF's Python target), its deadline
        handler runs right away, inside this reaction."""
        ctx = current(self.path, "check_deadline()")
        bound = self._bound[ctx.invocation.reaction]
        deadline = bound.deadline
        missed = deadline is not None and self.physical_time() > ctx.invocation.tag.time + deadline
        if missed and invoke_handler and bound.handler is not None:
            getattr(self, bound.handler)()
        return missed

    def request_stop(self) -> None:
        """Stop the program at the next microstep (from a reaction, or from any thread while running)."""
        ctx = maybe_current()
        if ctx is not None:
            ctx.result.stop = True
            return
        runtime = self.runtime_link()
        if runtime is None:
            raise LifecycleError(f"{self.path}.request_stop() called while the program is not running")
        runtime.request_stop()

    def runtime_link(self) -> Scheduler | None:
        """The scheduler running this reactor's program (None when not running, or in a worker process)."""
        return self._runtime if self._phase in (Phase.RUNNING, Phase.SHUTDOWN) else None

    # -- the host side (called by executors) --------------------------------------------------------------
    def react(self, invocation: Invocation) -> Result:
        """Run reaction ``invocation.reaction`` (or its deadline handler); never raises."""
        bound = self._bound[invocation.reaction]
        result = Result(invocation.reactor, invocation.reaction, invocation.name)
        values = invocation.values
        if bound.mutable:  # this reaction's own copies of its mutable inputs
            values = {k: copy.deepcopy(v) if k in bound.mutable else v for k, v in values.items()}
        token = enter(ReactionContext(invocation, bound.readable, bound.writable, result, values,
                                      bound.mutable, bound.transitions))
        try:
            if invocation.deadline_missed and bound.handler is not None:
                getattr(self, bound.handler)()
            else:
                body = getattr(type(self), bound.method)
                (body.fn if type(body) is ReactionDef else body)(self, *bound.args)
        except Exception as exc:
            result.error = exc
            result.error_text = traceback.format_exc()
        finally:
            leave(token)
        return result

    def _reset_state(self, mode: str | None) -> None:
        """Restore the ``resettable`` state of ``mode`` (the reaction assembly adds for a reset)."""
        for name, value in self._decl.resettable[mode].items():
            setattr(self, name, copy.deepcopy(value))

    # -- tree ---------------------------------------------------------------------------------------------
    @property
    def path(self) -> str:
        """Deterministic path from the main reactor, e.g. ``"main.bank[3].filter"``."""
        if self._path is not None:
            return self._path
        return self.name if self.parent is None else f"{self.parent.path}.{self.name}"

    @property
    def children(self) -> list[Reactor]:
        return list(self._decl.children.values())

    def __getstate__(self) -> dict[str, Any]:
        """Pickling (for a process executor) drops the link to the scheduler and to the parent, so that a
        pickled reactor carries its own subtree only; pickle after assembly, when paths are fixed."""
        state = dict(self.__dict__)
        state["_runtime"] = None
        state["parent"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        for child in self._decl.children.values():
            child.parent = self

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.path}>"
