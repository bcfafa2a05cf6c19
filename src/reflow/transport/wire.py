"""Frames on a channel socket: the eager protocol's two message forms and the greeting.

A channel is a connected unix ``SOCK_SEQPACKET`` socket: the kernel keeps message boundaries, there is no
handshake per message and one ``send``/``recv`` pair moves one frame. Three frame types:

* ``I`` inline: a small message (up to the sender's ``inline_bytes``) travels whole inside the frame.
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
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from reflow.transport.serialize import KINDS, Encoded, Kind, viewer

_INLINE = struct.Struct("<cBII")  # tag, kind, header length, buffer count
_HANDLE = struct.Struct("<cBIQII")  # tag, kind, block id, offset, header length, buffer count
_FORWARD = struct.Struct("<cBIQIIH")  # tag, kind, block id, its offset, header length, buffers, stores
_ELSEWHERE = struct.Struct("<cBIQIIH")  # tag, kind, block id, offset in the store, header length, buffers,
# length of the store's name
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
    block's size, and the end every frame of it shares (the packed sizes, then the header)."""

    kind: Kind
    header: bytes
    sizes: tuple[int, ...]
    offsets: tuple[int, ...]
    total: int  # the block: every buffer, each padded to 64 bytes
    span: int  # from the first buffer's start to the last one's end (what a reader maps)
    tail: bytes
    nbytes: int  # header and buffers: the message's size, which decides inline or store
    build: Callable[[np.ndarray[Any, Any]], Any] | None = None  # receivers: the message from its block

    @classmethod
    def of(cls, kind: Kind, header: bytes, sizes: tuple[int, ...], tail: bytes, viewed: bool = False) -> Plan:
        """The plan of a message of ``sizes``; ``viewed``: with ``build`` (receivers of arrays)."""
        offs, total = buffer_offsets(list(sizes))
        span = offs[-1] + sizes[-1] if sizes else 0
        return cls(kind, header, sizes, tuple(offs), total, span, tail, len(header) + sum(sizes),
                   viewer(kind, header, tuple(offs)) if viewed and sizes else None)


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
    sizes = tuple(b.nbytes for b in enc.buffers)
    made = Plan.of(enc.kind, enc.header, sizes, _sizes_struct(len(sizes)).pack(*sizes) + enc.header)
    if cached:
        if len(_plans) >= PLAN_CACHE:
            _plans.clear()
        _plans[enc.header] = made
    return made


def inline_frame(p: Plan, buffers: tuple[memoryview, ...]) -> bytes:
    head = _INLINE.pack(b"I", _KIND_CODE[p.kind], len(p.header), len(p.sizes))
    return b"".join([head, p.tail, *buffers])


def handle_frame(p: Plan, block_id: int, offset: int) -> bytes:
    return _HANDLE.pack(b"H", _KIND_CODE[p.kind], block_id, offset, len(p.header), len(p.sizes)) + p.tail


def forward_frame(p: Plan, block_id: int, offset: int, where: list[tuple[int, int]],
                  stores: list[str]) -> bytes:
    """``where[i]`` = (store index or OWN, offset) of buffer i: in ``stores[index]`` at that offset, or in
    the sender's block at that offset from the block's start."""
    n = len(p.sizes)
    head = _FORWARD.pack(b"F", _KIND_CODE[p.kind], block_id, offset, len(p.header), n, len(stores))
    return b"".join([head, p.tail[:8 * n], _index_struct(n).pack(*[i for i, _ in where]),
                     _sizes_struct(n).pack(*[o for _, o in where]), *map(_name, stores), p.header])


@functools.lru_cache(maxsize=256)
def _name(store: str) -> bytes:
    """A store's name as a forward frame carries it: length, then UTF-8 bytes."""
    raw = store.encode()
    return _NAME.pack(len(raw)) + raw


def elsewhere_frame(p: Plan, block_id: int, store: str, offset: int) -> bytes:
    """A message forwarded whole: it lies in ``store`` from ``offset`` on, laid out as ``p`` says."""
    name = _name(store)
    return _ELSEWHERE.pack(b"E", _KIND_CODE[p.kind], block_id, offset, len(p.header), len(p.sizes),
                           len(name) - _NAME.size) + name[_NAME.size:] + p.tail


@functools.lru_cache(maxsize=256)
def _decoded(raw: bytes) -> str:
    return raw.decode()


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


TAG_INLINE, TAG_HANDLE, TAG_ELSEWHERE, TAG_FORWARD = ord("I"), ord("H"), ord("E"), ord("F")  # as read


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
    stores: list[str] | None = None


_received: dict[bytes, Plan] = {}  # a frame's tail (sizes, then header) -> its plan, for receivers


def received_plan(code: int, nbuf: int, tail: bytes) -> Plan:
    """The plan that a frame's ``tail`` (the packed sizes, then the header) describes; parsed once per
    layout for the kinds whose header fixes the sizes, with the function that rebuilds such a message
    from the block it lies in (``serialize.viewer``)."""
    kind = KINDS[code]
    found = _received.get(tail)
    if found is not None and found.kind == kind:
        return found
    cached = kind in _CACHED
    made = Plan.of(kind, tail[8 * nbuf:], _sizes_struct(nbuf).unpack_from(tail), tail, viewed=cached)
    if cached:
        if len(_received) >= PLAN_CACHE:
            _received.clear()
        _received[tail] = made
    return made


def parse(frame: memoryview) -> Frame:
    tag = frame[0]
    if tag == TAG_HANDLE:
        _, k, bid, off, hlen, nbuf = _HANDLE.unpack_from(frame)
        return Frame(tag, received_plan(k, nbuf, bytes(frame[_HANDLE.size:_HANDLE.size + 8 * nbuf + hlen])),
                     bid, off)
    if tag == TAG_INLINE:
        _, k, hlen, nbuf = _INLINE.unpack_from(frame)
        end = _INLINE.size + 8 * nbuf + hlen
        return Frame(tag, received_plan(k, nbuf, bytes(frame[_INLINE.size:end])), data_start=end)
    if tag == TAG_ELSEWHERE:
        _, k, bid, off, hlen, nbuf, nlen = _ELSEWHERE.unpack_from(frame)
        pos = _ELSEWHERE.size + nlen
        return Frame(tag, received_plan(k, nbuf, bytes(frame[pos:pos + 8 * nbuf + hlen])), bid, off,
                     stores=[_decoded(bytes(frame[_ELSEWHERE.size:pos]))])
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
        return Frame(tag, received_plan(k, nbuf, sizes + bytes(frame[pos:pos + hlen])), bid, off,
                     where=where, stores=stores)
    raise ValueError(f"unknown frame tag {bytes([tag])!r}")
