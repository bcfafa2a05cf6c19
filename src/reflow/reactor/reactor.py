"""The ``Reactor`` base class and the ``@reaction`` decorator.

A reactor declares, in its ``__init__``, its ports, timers, actions and contained reactors (with
``self.input``, ``self.output``, ``self.timer``, ``self.logical_action``, ``self.add``, ``self.bank``, ...)
and the connections between its children (``self.connect``). Its reactions are methods decorated with
``@reaction(triggers=..., sources=..., effects=...)``, naming declared elements by their declared names
(``"in"``, ``"child.out"``, ``"bank.out"`` for every member of a bank, ``"startup"``, ``"shutdown"``); they
run in the order they are written in the class.

Every API call is checked against the program's lifecycle phase, as in reactor-cpp: declarations and
connections belong to *construction* (before the program is assembled), port reads/writes and
``request_stop`` to a running reaction, and a reactor is run at most once. A call in the wrong phase raises
``LifecycleError`` naming the call.
"""

from __future__ import annotations

import enum
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from reflow.errors import LifecycleError, PortConnectionError, ReactorError
from reflow.reactor.context import ReactionContext, current, enter, leave, maybe_current
from reflow.reactor.elements import Element, Input, LogicalAction, Output, PhysicalAction, Port, Timer
from reflow.runtime.executor import Invocation, Result
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


@dataclass(frozen=True)
class ReactionDecl:
    """What ``@reaction`` records: declared names, an optional deadline (ns) with its handler, a cost (s)."""

    triggers: tuple[str, ...]
    sources: tuple[str, ...] = ()
    effects: tuple[str, ...] = ()
    deadline: int | None = None
    on_deadline: str | None = None
    cost: float | None = None


class ReactionDef:
    """A reaction method in a reactor class (what ``@reaction`` turns a method into)."""

    def __init__(self, fn: Callable[[Any], None], decl: ReactionDecl) -> None:
        self.fn = fn
        self.decl = decl
        self.name: str = fn.__name__
        self.__doc__ = fn.__doc__

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name


def _names(x: str | Sequence[str]) -> tuple[str, ...]:
    return (x,) if isinstance(x, str) else tuple(x)


def reaction(*, triggers: str | Sequence[str], sources: str | Sequence[str] = (),
             effects: str | Sequence[str] = (), deadline: int | None = None, on_deadline: str | None = None,
             cost: float | None = None) -> Callable[[Callable[[Any], None]], ReactionDef]:
    """Declare a reaction. ``deadline`` (ns) needs ``on_deadline``, the name of a method that runs instead
    of the body when the reaction starts later than ``tag time + deadline`` in physical time. ``cost`` is
    the expected run time in seconds, for placement (default: measured)."""
    if (deadline is None) != (on_deadline is None):
        raise ReactorError("a reaction's `deadline=` and `on_deadline=` go together; give both or neither")
    decl = ReactionDecl(_names(triggers), _names(sources), _names(effects), deadline, on_deadline, cost)
    if not decl.triggers:
        raise ReactorError("a reaction needs at least one trigger (a port, timer, action, startup or "
                           "shutdown)")

    def wrap(fn: Callable[[Any], None]) -> ReactionDef:
        return ReactionDef(fn, decl)

    return wrap


@dataclass(frozen=True)
class Connection:
    """``src`` drives ``dst``, at the same tag or ``after`` ns later (0: next microstep)."""

    src: Port[Any]
    dst: Port[Any]
    after: int | None = None


@dataclass
class BoundReaction:
    """A reaction resolved at assembly: its method's and handler's names (names, not functions, so that a
    reactor pickles), and the keys it may read and write."""

    name: str
    method: str
    handler: str | None
    readable: frozenset[str]
    writable: frozenset[str]


@dataclass
class _Declared:
    elements: dict[str, Element] = field(default_factory=dict)
    multiports: dict[str, list[Port[Any]]] = field(default_factory=dict)
    children: dict[str, Reactor] = field(default_factory=dict)
    banks: dict[str, list[Reactor]] = field(default_factory=dict)
    connections: list[Connection] = field(default_factory=list)


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

    def input(self, name: str, dtype: type[Any] = object, *, required: bool = True) -> Input[Any]:
        """Declare an input port (``required``: it must be connected)."""
        port: Input[Any] = Input(self, name, dtype, required)
        self._declare(f"input({name!r})", port)
        return port

    def output(self, name: str, dtype: type[Any] = object) -> Output[Any]:
        """Declare an output port."""
        port: Output[Any] = Output(self, name, dtype)
        self._declare(f"output({name!r})", port)
        return port

    def input_multiport(self, name: str, width: int, dtype: type[Any] = object, *,
                        required: bool = True) -> list[Input[Any]]:
        """Declare ``width`` inputs ``name[0]`` ... ``name[width-1]``; ``name`` in a reaction means all."""
        ports = [self.input(f"{name}[{i}]", dtype, required=required) for i in range(width)]
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

    def logical_action(self, name: str, min_delay: int = 0) -> LogicalAction[Any]:
        """Declare a logical action with a minimum delay in ns."""
        a: LogicalAction[Any] = LogicalAction(self, name, min_delay)
        self._declare(f"logical_action({name!r})", a)
        return a

    def physical_action(self, name: str, min_delay: int = 0) -> PhysicalAction[Any]:
        """Declare a physical action (scheduled from other threads, tagged with physical time)."""
        a: PhysicalAction[Any] = PhysicalAction(self, name, min_delay)
        self._declare(f"physical_action({name!r})", a)
        return a

    def add(self, child: R) -> R:
        """Contain ``child`` (named by its ``name``); returns it."""
        self._constructing(f"add({child.name!r})")
        if child.parent is not None:
            raise ReactorError(f"reactor {child.path} is already contained in {child.parent.path}")
        if child.name in self._decl.children or child.name in self._decl.elements:
            raise ReactorError(f"reactor {self.path} already has a member named {child.name!r}")
        child.parent = self
        self._decl.children[child.name] = child
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
                after: int | None = None) -> None:
        """Connect ports: one to one, a list to a list of the same width, or one to many.

        ``after`` (ns) delays the values by that much (0: the next microstep) and breaks causality loops.
        """
        srcs = [src] if isinstance(src, Port) else list(src)
        dsts = [dst] if isinstance(dst, Port) else list(dst)
        self._constructing(f"connect({srcs[0] if srcs else '[]'} -> {dsts[0] if dsts else '[]'})")
        if len(srcs) == 1 and len(dsts) > 1:
            srcs = srcs * len(dsts)
        if len(srcs) != len(dsts):
            raise PortConnectionError(f"in {self.path}: cannot connect {len(srcs)} ports to {len(dsts)} "
                                      "ports; widths must match (or connect one port to many)")
        if after is not None and after < 0:
            raise PortConnectionError(f"in {self.path}: `after` must be >= 0 ns, got {after}")
        driven = {c.dst for c in self._decl.connections}
        for s, d in zip(srcs, dsts, strict=True):
            self._check_connection(s, d)
            if d in driven:
                raise PortConnectionError(f"in {self.path}: {d.key} is already driven by another connection; "
                                          "a port has at most one driver")
            driven.add(d)
            self._decl.connections.append(Connection(s, d, after))

    def _check_connection(self, src: Port[Any], dst: Port[Any]) -> None:
        here = f"in {self.path}: cannot connect {src.key} to {dst.key}"
        if isinstance(src, Output) and isinstance(dst, Output) and dst.owner is not self:
            raise PortConnectionError(f"{here}: both are outputs; connect an output to an input")
        if isinstance(src, Input) and isinstance(dst, Input) and src.owner is not self:
            raise PortConnectionError(f"{here}: both are inputs of contained reactors; an input cannot drive "
                                      "another reactor's input, connect an output to an input")
        src_ok = (isinstance(src, Output) and src.owner.parent is self) or (
            isinstance(src, Input) and src.owner is self)
        dst_ok = (isinstance(dst, Input) and dst.owner.parent is self) or (
            isinstance(dst, Output) and dst.owner is self)
        if not src_ok:
            raise PortConnectionError(f"{here}: the source must be an output of a reactor contained here "
                                      "(add it with self.add() first) or an input of this reactor")
        if not dst_ok:
            raise PortConnectionError(f"{here}: the destination must be an input of a reactor contained here "
                                      "(add it with self.add() first) or an output of this reactor")
        if object not in (src.dtype, dst.dtype) and not issubclass(src.dtype, dst.dtype):
            raise PortConnectionError(f"{here}: types differ ({src.dtype.__name__} -> {dst.dtype.__name__})")

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
        """Physical nanoseconds since the program started; only while it runs."""
        runtime = self.runtime_link()
        if runtime is None:
            raise LifecycleError(f"{self.path}.physical_time() called while the program is not running")
        return runtime.physical_time()

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
        token = enter(ReactionContext(invocation, bound.readable, bound.writable, result))
        try:
            if invocation.deadline_missed and bound.handler is not None:
                getattr(self, bound.handler)()
            else:
                definition: ReactionDef = getattr(type(self), bound.method)
                definition.fn(self)
        except Exception as exc:
            result.error = exc
            result.error_text = traceback.format_exc()
        finally:
            leave(token)
        return result

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
