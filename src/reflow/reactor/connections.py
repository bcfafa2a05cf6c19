"""Connections between ports: who may drive whom, and how lists of ports pair up.

``Reactor.connect(src, dst)`` pairs ports one to one, a list with a list of the same width, or one port with
many (broadcast); ``repeat=True`` repeats the source list until it covers the destinations (LF's
``(a, b)+ -> ...``), and ``interleaved(...)`` reorders the ports of a bank of multiports channel by channel
(LF's ``interleaved(bank.port)``). A connection may be delayed (``after``) or physical (LF's ``~>``: the value
is stamped with physical time), and belongs to the mode it is declared in, if any.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from reflow.errors import PortConnectionError
from reflow.reactor.elements import Input, Mode, Output, Port

if TYPE_CHECKING:
    from reflow.reactor.reactor import Reactor


@dataclass(frozen=True)
class Connection:
    """``src`` drives ``dst``, at the same tag or ``after`` ns later (0: next microstep); a ``physical`` one
    at the physical time of the write (plus ``after``). ``mode``: the mode it is declared in."""

    src: Port[Any]
    dst: Port[Any]
    after: int | None = None
    physical: bool = False
    mode: Mode | None = None


def interleaved(groups: Sequence[Sequence[Port[Any]]]) -> list[Port[Any]]:
    """The ports of ``groups`` (e.g. one multiport per bank member) channel by channel instead of member by
    member: ``[[a0, a1], [b0, b1]]`` -> ``[a0, b0, a1, b1]`` (LF's ``interleaved(bank.port)``)."""
    widths = {len(g) for g in groups}
    if len(widths) > 1:
        raise PortConnectionError(f"interleaved(...) needs groups of one width, got widths {sorted(widths)}")
    return [g[i] for i in range(widths.pop() if widths else 0) for g in groups]


def pair(owner: Reactor, src: Port[Any] | Sequence[Port[Any]], dst: Port[Any] | Sequence[Port[Any]],
         repeat: bool) -> list[tuple[Port[Any], Port[Any]]]:
    """The (source, destination) pairs a ``connect`` call makes."""
    srcs = [src] if isinstance(src, Port) else list(src)
    dsts = [dst] if isinstance(dst, Port) else list(dst)
    if (len(srcs) == 1 or repeat) and srcs and len(dsts) > len(srcs):
        if len(dsts) % len(srcs):
            raise PortConnectionError(f"in {owner.path}: repeating {len(srcs)} ports does not cover "
                                      f"{len(dsts)} ports evenly; the destinations' width must be a multiple")
        srcs = srcs * (len(dsts) // len(srcs))
    if len(srcs) != len(dsts):
        raise PortConnectionError(f"in {owner.path}: cannot connect {len(srcs)} ports to {len(dsts)} "
                                  "ports; widths must match (or connect one port to many, or repeat=True)")
    return list(zip(srcs, dsts, strict=True))


def check_connection(owner: Reactor, src: Port[Any], dst: Port[Any]) -> None:
    """Raise ``PortConnectionError`` unless ``owner`` may connect ``src`` to ``dst``."""
    here = f"in {owner.path}: cannot connect {src.key} to {dst.key}"
    if isinstance(src, Output) and isinstance(dst, Output) and dst.owner is not owner:
        raise PortConnectionError(f"{here}: both are outputs; connect an output to an input")
    if isinstance(src, Input) and isinstance(dst, Input) and src.owner is not owner:
        raise PortConnectionError(f"{here}: both are inputs of contained reactors; an input cannot drive "
                                  "another reactor's input, connect an output to an input")
    src_ok = (isinstance(src, Output) and src.owner.parent is owner) or (
        isinstance(src, Input) and src.owner is owner)
    dst_ok = (isinstance(dst, Input) and dst.owner.parent is owner) or (
        isinstance(dst, Output) and dst.owner is owner)
    if not src_ok:
        raise PortConnectionError(f"{here}: the source must be an output of a reactor contained here "
                                  "(add it with self.add() first) or an input of this reactor")
    if not dst_ok:
        raise PortConnectionError(f"{here}: the destination must be an input of a reactor contained here "
                                  "(add it with self.add() first) or an output of this reactor")
    if object not in (src.dtype, dst.dtype) and not issubclass(src.dtype, dst.dtype):
        raise PortConnectionError(f"{here}: types differ ({src.dtype.__name__} -> {dst.dtype.__name__})")


def exclusive(a: Mode | None, b: Mode | None) -> bool:
    """Whether two declarations can never be active at once: different modes of one reactor."""
    return a is not None and b is not None and a is not b and a.owner is b.owner
