"""Frames on a channel socket: the eager protocol's message forms and the greeting.

A channel is a connected unix ``SOCK_SEQPACKET`` socket: the kernel keeps message boundaries, there is no
handshake per message and one ``send``/``recv`` pair moves one frame. The frame types:

* ``I`` inline: a small message (up to the sender's ``inline_bytes``) travels whole inside the frame, its
  buffers laid out as they would be in a block.
* ``H`` handle: a large message sits in the sender's object store; the frame carries only the block id, its
  offset and the buffer sizes (a few dozen bytes, whatever the payload size).
* ``E`` elsewhere: a large message that the sender forwards whole (``forward``): it lies in *another*
  process's store, named in the frame, laid out as in a handle frame from the offset given; the block id is
  the sender's proxy block, which keeps it there until every reader released it.
* ``F`` forward: a large message some of whose buffers sit in *other* processes' stores, which the sender
  forwards (``forward``): per buffer, the store it lies in (an index into the names the frame lists, or
  ``OWN`` for the sender's block, which holds the others) and its offset there.
* ``W`` welcome: the first frame a publisher sends a new subscriber: its store's name and geometry and the
  reader slot the subscriber owns in the release table.
* ``R`` refusal: sent instead of a welcome when the publisher has no slot left; it says why, as text.

A message's *layout* (kind, header length, buffer sizes, header: ``Plan.layout``) ends every I, H and E frame,
after the few fields that change from message to message (the block id and offset; for E the store's name
before it). A stream repeats a few layouts, so a receiver keeps the plan of each by those bytes and parses
a frame with one unpack and one dictionary lookup.
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from reflow.transport.serialize import KINDS, Encoded, Kind, viewer

_LAYOUT = struct.Struct("<BII")  # kind, header length, buffer count; then the sizes (<Q each), the header
_PLACE = struct.Struct("<cIQ")  # tag, block id, offset: all that changes between two H (or E) frames
_FORWARD = struct.Struct("<cBIQIIH")  # tag, kind, block id, its offset, header length, buffers, stores
_NAME = struct.Struct("<H")
OWN = 0xFFFF  # the store index of a forwarded buffer in the sender's own block
_WELCOME = struct.Struct("<cIIIQ")  # tag, slot, max readers, max blocks, inline bytes (+ store name)
ALIGN = 64


def buffer_offsets(sizes: list[int]) -> tuple[list[int], int]:
    """Offsets of buffers laid out one after another in a block, each 64-byte aligned, and the total size."""
    offs, pos = [], 0
    for n in sizes:
        offs.append(pos)
        pos += (n + ALIGN - 1) // ALIGN * ALIGN
    return offs, pos


_KIND_CODE = {kind: i for i, kind in enumerate(KINDS)}


@functools.cache
def _sizes_struct(n: int) -> struct.Struct:
    return struct.Struct(f"<{n}Q")


@dataclass(frozen=True, slots=True)
class Plan:
    """How a message lies in a block and on the wire: its buffers' sizes and offsets in the block, the
    block's size, and its layout as every frame of it ends (see the module docstring)."""

    kind: Kind
    header: bytes
    sizes: tuple[int, ...]
    offsets: tuple[int, ...]
    total: int  # the block: every buffer, each padded to 64 bytes
    span: int  # from the first buffer's start to the last one's end (what a reader maps)
    layout: bytes
    pads: tuple[bytes, ...]  # the zero bytes after each buffer up to the next 64-byte boundary
    nbytes: int  # header and padded buffers: the size that decides inline or store
    build: Callable[[np.ndarray[Any, Any]], Any] | None = None  # receivers: the message from its block

    @classmethod
    def of(cls, kind: Kind, header: bytes, sizes: tuple[int, ...], viewed: bool = False) -> Plan:
        """The plan of a message of ``sizes``; ``viewed``: with ``build`` (receivers)."""
        if not sizes:  # a plain pickle: the common small message, planned per message
            return cls(kind, header, (), (), 0, 0, _LAYOUT.pack(_KIND_CODE[kind], len(header), 0) + header,
                       (), len(header))
        offs, total = buffer_offsets(list(sizes))
        span = offs[-1] + sizes[-1]
        layout = _LAYOUT.pack(_KIND_CODE[kind], len(header), len(sizes)) \
            + _sizes_struct(len(sizes)).pack(*sizes) + header
        pads = tuple(bytes(end - off - size) for off, size, end in zip(offs, sizes, [*offs[1:], total],
                                                                         strict=True))
        return cls(kind, header, sizes, tuple(offs), total, span, layout, pads, len(header) + total,
                   viewer(kind, header, tuple(offs), sizes) if viewed else None)


_CACHED = frozenset({"raw", "arrays"})  # kinds whose header fixes the buffer sizes: planned once per layout
_plans: dict[bytes, Plan] = {}  # header -> plan, for the sender
PLAN_CACHE = 256  # layouts remembered (emptied when full)


def plan(enc: Encoded) -> Plan:
    """The plan of ``enc``; worked out once per layout for arrays and dicts of arrays, whose header fixes
    every size (a stream of them repeats a few layouts), per message for pickles."""
    cached = enc.kind in _CACHED
    if cached:
        found = _plans.get(enc.header)
        if found is not None:
            return found
    made = Plan.of(enc.kind, enc.header, tuple(b.nbytes for b in enc.buffers))
    if cached:
        if len(_plans) >= PLAN_CACHE:
            _plans.clear()
        _plans[enc.header] = made
    return made


def inline_frame(p: Plan, buffers: tuple[memoryview, ...]) -> bytes:
    """The whole message; its buffers laid out as in a block (64-byte aligned), so the receiver views them
    as it views a block, aligned for any dtype."""
    if len(buffers) == 1:
        return b"".join([b"I", p.layout, buffers[0]])
    return b"".join([b"I", p.layout, *(part for pair in zip(buffers, p.pads, strict=True) for part in pair)])


def handle_frame(p: Plan, block_id: int, offset: int) -> bytes:
    return _PLACE.pack(b"H", block_id, offset) + p.layout


def elsewhere_frame(p: Plan, block_id: int, store: str, offset: int) -> bytes:
    """A message forwarded whole: it lies in ``store`` from ``offset`` on, laid out as ``p`` says."""
    return b"".join([_PLACE.pack(b"E", block_id, offset), _name(store), p.layout])


def forward_frame(p: Plan, block_id: int, offset: int, where: list[tuple[int, int]],
                  stores: list[str]) -> bytes:
    """``where[i]`` = (store index or OWN, offset) of buffer i: in ``stores[index]`` at that offset, or in
    the sender's block at that offset from the block's start."""
    n = len(p.sizes)
    head = _FORWARD.pack(b"F", _KIND_CODE[p.kind], block_id, offset, len(p.header), n, len(stores))
    sizes = p.layout[_LAYOUT.size:_LAYOUT.size + 8 * n]
    return b"".join([head, sizes, _index_struct(n).pack(*[i for i, _ in where]),
                     _sizes_struct(n).pack(*[o for _, o in where]), *map(_name, stores), p.header])


@functools.lru_cache(maxsize=256)
def _name(store: str) -> bytes:
    """A store's name as a forward frame carries it: length, then UTF-8 bytes."""
    raw = store.encode()
    return _NAME.pack(len(raw)) + raw


@functools.cache
def _index_struct(n: int) -> struct.Struct:
    return struct.Struct(f"<{n}H")


@dataclass(frozen=True)
class Welcome:
    slot: int
    max_readers: int
    max_blocks: int
    inline_bytes: int
    store: str


def welcome_frame(w: Welcome) -> bytes:
    return _WELCOME.pack(b"W", w.slot, w.max_readers, w.max_blocks, w.inline_bytes) + w.store.encode()


def refusal_frame(reason: str) -> bytes:
    return b"R" + reason.encode()


def refusal(frame: bytes | memoryview) -> str | None:
    """The reason of a refusal frame; None for any other frame."""
    return bytes(frame[1:]).decode() if frame[0] == ord("R") else None


def parse_welcome(frame: bytes | memoryview) -> Welcome:
    _, slot, mr, mb, inline = _WELCOME.unpack_from(frame)
    return Welcome(slot, mr, mb, inline, bytes(frame[_WELCOME.size:]).decode())


TAG_INLINE, TAG_HANDLE, TAG_ELSEWHERE, TAG_FORWARD = b"IHEF"  # frame tags, as read from a buffer


@dataclass(slots=True)
class Frame:
    """A parsed inline, handle, elsewhere or forward frame: its message's ``plan``; for inline frames
    ``data_start`` is where the buffers begin; an elsewhere frame names the store its message lies in
    (``stores``, one); a forward frame says where each buffer lies (``where``, ``stores``: see
    ``forward_frame``)."""

    tag: int
    plan: Plan
    block_id: int = -1
    offset: int = 0
    data_start: int = 0
    where: list[tuple[int, int]] | None = None
    stores: tuple[str, ...] | None = None


_by_layout: dict[bytes, Plan] = {}  # layout -> plan, for receivers
_elsewhere: dict[bytes, tuple[Plan, tuple[str]]] = {}  # an E frame's end (store name, layout) -> both


def received_plan(layout: bytes) -> Plan:
    """The plan a ``layout`` describes, with the function that rebuilds its message from the bytes it lies
    in (``serialize.viewer``); parsed once per layout for the kinds whose header fixes the sizes."""
    found = _by_layout.get(layout)
    if found is not None:
        return found
    code, hlen, nbuf = _LAYOUT.unpack_from(layout)
    kind, pos = KINDS[code], _LAYOUT.size + 8 * nbuf
    made = Plan.of(kind, layout[pos:pos + hlen], _sizes_struct(nbuf).unpack_from(layout, _LAYOUT.size),
                   viewed=True)
    if kind in _CACHED:
        if len(_by_layout) >= PLAN_CACHE:
            _by_layout.clear()
        _by_layout[layout] = made
    return made


def parse(frame: memoryview) -> Frame:
    tag = frame[0]
    if tag == TAG_HANDLE:
        _, bid, off = _PLACE.unpack_from(frame)
        return Frame(tag, received_plan(bytes(frame[_PLACE.size:])), bid, off)
    if tag == TAG_INLINE:
        _, hlen, nbuf = _LAYOUT.unpack_from(frame, 1)
        end = 1 + _LAYOUT.size + 8 * nbuf + hlen
        return Frame(tag, received_plan(bytes(frame[1:end])), data_start=end)
    if tag == TAG_ELSEWHERE:
        _, bid, off = _PLACE.unpack_from(frame)
        rest = bytes(frame[_PLACE.size:])
        found = _elsewhere.get(rest)
        if found is None:
            end = _NAME.size + _NAME.unpack_from(rest)[0]
            found = received_plan(rest[end:]), (rest[_NAME.size:end].decode(),)
            if found[0].kind in _CACHED:
                if len(_elsewhere) >= PLAN_CACHE:
                    _elsewhere.clear()
                _elsewhere[rest] = found
        return Frame(tag, found[0], bid, off, stores=found[1])
    if tag == TAG_FORWARD:
        _, k, bid, off, hlen, nbuf, nstores = _FORWARD.unpack_from(frame)
        pos = _FORWARD.size
        sizes = bytes(frame[pos:pos + 8 * nbuf])
        pos += 8 * nbuf
        index = _index_struct(nbuf).unpack_from(frame, pos)
        pos += 2 * nbuf
        where = list(zip(index, _sizes_struct(nbuf).unpack_from(frame, pos), strict=True))
        pos += 8 * nbuf
        stores = []
        for _ in range(nstores):
            (length,) = _NAME.unpack_from(frame, pos)
            stores.append(bytes(frame[pos + 2:pos + 2 + length]).decode())
            pos += 2 + length
        layout = _LAYOUT.pack(k, hlen, nbuf) + sizes + bytes(frame[pos:pos + hlen])
        return Frame(tag, received_plan(layout), bid, off, where=where, stores=tuple(stores))
    raise ValueError(f"unknown frame tag {bytes([tag])!r}")
