"""Frames on a channel socket: the eager protocol's two message forms and the greeting.

A channel is a connected unix ``SOCK_SEQPACKET`` socket: the kernel keeps message boundaries, there is no
handshake per message and one ``send``/``recv`` pair moves one frame. Three frame types:

* ``I`` inline: a small message (up to the sender's ``inline_bytes``) travels whole inside the frame.
* ``H`` handle: a large message sits in the sender's object store; the frame carries only the block id, its
  offset and the buffer sizes (a few dozen bytes, whatever the payload size).
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
from dataclasses import dataclass

from reflow.transport.serialize import KINDS, Encoded, Kind

_INLINE = struct.Struct("<cBII")  # tag, kind, header length, buffer count
_HANDLE = struct.Struct("<cBIQII")  # tag, kind, block id, offset, header length, buffer count
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


def inline_frame(enc: Encoded) -> bytes:
    sizes = [b.nbytes for b in enc.buffers]
    head = _INLINE.pack(b"I", _KIND_CODE[enc.kind], len(enc.header), len(sizes))
    return b"".join([head, _sizes_struct(len(sizes)).pack(*sizes), enc.header, *enc.buffers])


def handle_frame(enc: Encoded, block_id: int, offset: int) -> bytes:
    sizes = [b.nbytes for b in enc.buffers]
    head = _HANDLE.pack(b"H", _KIND_CODE[enc.kind], block_id, offset, len(enc.header), len(sizes))
    return b"".join([head, _sizes_struct(len(sizes)).pack(*sizes), enc.header])


def forward_frame(enc: Encoded, block_id: int, offset: int, where: list[tuple[int, int]],
                  stores: list[str]) -> bytes:
    """``where[i]`` = (store index or OWN, offset) of buffer i: in ``stores[index]`` at that offset, or in
    the sender's block at that offset from the block's start."""
    sizes = [b.nbytes for b in enc.buffers]
    n = len(sizes)
    head = _FORWARD.pack(b"F", _KIND_CODE[enc.kind], block_id, offset, len(enc.header), n, len(stores))
    names = [part for name in stores for part in (_NAME.pack(len(name.encode())), name.encode())]
    return b"".join([head, _sizes_struct(n).pack(*sizes), _index_struct(n).pack(*(i for i, _ in where)),
                     _sizes_struct(n).pack(*(o for _, o in where)), *names, enc.header])


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


_I, _H, _F = ord("I"), ord("H"), ord("F")


@dataclass(slots=True)
class Frame:
    """A parsed inline, handle or forward frame; for inline frames ``data_start`` is where the buffers begin;
    a forward frame also says where each buffer lies (``where``, ``stores``: see ``forward_frame``)."""

    tag: bytes
    kind: Kind
    header: bytes
    sizes: list[int]
    block_id: int = -1
    offset: int = 0
    data_start: int = 0
    where: list[tuple[int, int]] | None = None
    stores: list[str] | None = None


def parse(frame: memoryview) -> Frame:
    tag = frame[0]
    if tag == _I:
        _, k, hlen, nbuf = _INLINE.unpack_from(frame)
        pos = _INLINE.size
        sizes = list(_sizes_struct(nbuf).unpack_from(frame, pos))
        pos += 8 * nbuf
        return Frame(b"I", KINDS[k], bytes(frame[pos:pos + hlen]), sizes, data_start=pos + hlen)
    if tag == _H:
        _, k, bid, off, hlen, nbuf = _HANDLE.unpack_from(frame)
        pos = _HANDLE.size
        sizes = list(_sizes_struct(nbuf).unpack_from(frame, pos))
        pos += 8 * nbuf
        return Frame(b"H", KINDS[k], bytes(frame[pos:pos + hlen]), sizes, bid, off)
    if tag == _F:
        _, k, bid, off, hlen, nbuf, nstores = _FORWARD.unpack_from(frame)
        pos = _FORWARD.size
        sizes = list(_sizes_struct(nbuf).unpack_from(frame, pos))
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
        return Frame(b"F", KINDS[k], bytes(frame[pos:pos + hlen]), sizes, bid, off, where=where,
                     stores=stores)
    raise ValueError(f"unknown frame tag {bytes([tag])!r}")
