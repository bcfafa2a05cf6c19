"""Forwarding: a received message published again travels as a handle to the block it already lies in.

Policy. A process that receives a large message holds *leases*: views on a block of the sender's store. When
it publishes that message (or part of it) again, to the sender or to anyone else, copying it into its own
store would move every byte once more for nothing: the bytes are already in shared memory that every process
on the node can map. So ``publish`` looks up whether the encoded buffers lie in one leased view, at the
offsets a handle frame describes, and if so sends a *forward* frame: the name of the foreign store, the offset
of the message in it, and a proxy block id of the publisher's own store whose release row tracks the new
readers. The proxy keeps the lease (and so the foreign block) alive until every new reader released it.

This makes a relay, a router, a tee or an echo cost a few microseconds whatever the payload size, and lets
a reactor pass its input to its output between processes without a copy. A round trip in which the echo
sends back what it received copies the payload once in all.

Rules (tested in ``tests/transport/test_transport_forward.py``):

* Forwarded are messages whose buffers all lie in one leased view, laid out as a handle frame lays them out
  (a received array, a slice or reshape of one, a received dict or structure of arrays sent back whole).
  Anything else is copied into the store as usual, and small messages still go inline.
* A forwarded message shares memory with the forwarder's copy, so publishing it makes the published arrays
  read-only in the forwarder (like a published loan). Copy first (``np.array(x)``) to keep writing.
* Receivers map the foreign store by name once and keep the mapping. A message whose store's publisher has
  closed (its name is gone from /dev/shm, though the memory lives on in the forwarder) is copied instead,
  since a new reader could not map it; the forwarder looks at /dev/shm at most every ``STORE_CHECK_S``
  per store. Should that publisher close within that time, or between the forward and the read, a reader
  that never mapped the store gets a ``TransportError`` naming it.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from reflow.errors import TransportError
from reflow.transport.serialize import Encoded
from reflow.transport.shm import SharedSegment
from reflow.transport.store import LEASES, Lease


@dataclass(frozen=True, slots=True)
class Span:
    """A message found inside a leased view: the lease, the view (to keep alive) and its start in the
    foreign segment."""

    lease: Lease
    view: np.ndarray[Any, Any]
    offset: int


STORE_CHECK_S = 0.05  # how long a store seen in /dev/shm is taken to be still there (a stat costs ~10 us)
_seen: dict[str, float] = {}  # store name -> when it was last seen in /dev/shm


def _address(buf: memoryview) -> int:
    """Where ``buf`` starts: its exporter's data pointer when it covers the whole exporter (as every buffer
    ``encode`` makes does; a dict lookup cheaper than wrapping it in a new array)."""
    exporter = buf.obj
    if isinstance(exporter, np.ndarray) and exporter.nbytes == buf.nbytes:
        return int(exporter.__array_interface__["data"][0])
    return int(np.frombuffer(buf, np.uint8).__array_interface__["data"][0])


def _store_exists(name: str) -> bool:
    now = time.monotonic()
    if now - _seen.get(name, -STORE_CHECK_S) < STORE_CHECK_S:
        return True
    if not os.path.exists(f"/dev/shm/{name.lstrip('/')}"):
        _seen.pop(name, None)
        return False
    if len(_seen) > 256:
        _seen.clear()
    _seen[name] = now
    return True


def leased_span(enc: Encoded, offsets: list[int], total: int) -> Span | None:
    """Where ``enc`` lies in a leased view, if its buffers sit there at ``offsets`` from one start (empty
    buffers may be anywhere: a receiver reads nothing of them)."""
    placed = [(buf, off) for buf, off in zip(enc.buffers, offsets, strict=True) if buf.nbytes]
    if not placed:
        return None
    exporter = placed[0][0].obj
    if not isinstance(exporter, np.ndarray):
        return None
    lease = LEASES.get(id(exporter)) or LEASES.get(id(exporter.base))
    view = lease.view() if lease is not None else None
    if lease is None or view is None or (view is not exporter and view is not exporter.base):
        return None
    start = _address(placed[0][0]) - lease.address - placed[0][1]
    if start < 0 or start + total > lease.size:
        return None
    if any(_address(buf) != lease.address + start + off for buf, off in placed[1:]):
        return None
    if not _store_exists(lease.store):
        return None  # its publisher closed: nobody new can map it, so copy (module docstring)
    return Span(lease, view, lease.offset + start)


def lock(enc: Encoded) -> None:
    """Make the arrays behind a forwarded message read-only in the forwarder (it now shares them)."""
    for buf in enc.buffers:
        if isinstance(buf.obj, np.ndarray):
            buf.obj.flags.writeable = False


class ForeignStores:
    """The stores a subscriber maps to read forwarded messages, attached once each by name."""

    def __init__(self, topic: str) -> None:
        self.topic = topic
        self._segments: dict[str, SharedSegment] = {}

    def segment(self, name: str) -> SharedSegment:
        seg = self._segments.get(name)
        if seg is None:
            try:
                seg = self._segments[name] = SharedSegment.attach(name)
            except FileNotFoundError:
                raise TransportError(
                    f"topic {self.topic!r}: a message forwarded from store {name!r} cannot be read: the "
                    "publisher that stored it has closed; keep it open until forwarded messages are read, "
                    "or forward a copy (np.array(x))") from None
        return seg

    def close(self) -> None:
        for seg in self._segments.values():
            with contextlib.suppress(Exception):
                seg.close()
        self._segments.clear()
