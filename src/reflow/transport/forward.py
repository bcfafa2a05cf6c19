"""Forwarding: a received array published again travels as a reference to where it already lies.

Policy. A process that receives a large message holds *leases*: views on a block of the sender's store. When
it publishes received arrays again (the whole message, a slice of it, or arrays of several messages put in a
new structure), to the sender or to anyone else, copying them into its own store would move every byte once
more for nothing: they are already in shared memory that every process on the node can map. So ``publish``
looks up, buffer by buffer, whether it lies in a leased view (``locate``). If any does, it sends a *forward*
frame that says, per buffer, which store it lies in and where: a foreign store by name, or the publisher's
own block, into which only the other buffers are copied. That block (a *proxy* with no bytes, when nothing
was copied) keeps the leases, and so the foreign blocks, alive until every new reader released it.

This makes a relay, a router, a tee or an echo cost a few dozen microseconds whatever the payload size, lets
a reactor pass its input on between processes without a copy, and lets the process executor's scheduler,
which receives every result and sends it on to the next worker, move arrays between workers without copying
them. A round trip in which the echo sends back what it received copies the payload once in all.

Rules (tested in ``tests/transport/test_transport_forward.py``):

* Forwarded is every buffer that lies in a leased view: a received array, a contiguous slice or reshape of
  one, received arrays inside any structure. Arrays computed from them, or made contiguous, are copied as
  usual, in the same message; small messages still go inline.
* Forwarded arrays share memory with the forwarder's, so publishing them makes them read-only in the
  forwarder (like a published loan). Copy first (``np.array(x)``) to keep writing.
* Receivers map a foreign store by name once and keep the mapping. An array whose store's publisher has
  closed (its name is gone from /dev/shm, though the memory lives on in the forwarder) is copied instead,
  since a new reader could not map it; the forwarder looks at /dev/shm at most every ``STORE_CHECK_S``
  per store. Should that publisher close within that time, or between the forward and the read, a reader
  that never mapped the store gets a ``TransportError`` naming it.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import time
from typing import Any, NamedTuple

import numpy as np

from reflow.errors import TransportError
from reflow.transport.serialize import Encoded
from reflow.transport.shm import SharedSegment, segment_path
from reflow.transport.store import LEASES, Lease

STORE_CHECK_S = 0.05  # how long a store seen in /dev/shm is taken to be still there (a stat costs ~10 us)
_seen: dict[str, float] = {}  # store name -> when it was last seen in /dev/shm


class Part(NamedTuple):
    """A buffer of a message found in a leased view: the lease, the view (to keep alive) and where the
    buffer starts in the lease's segment."""

    lease: Lease
    view: np.ndarray[Any, Any]
    offset: int


def _address(buf: memoryview) -> int:
    """Where ``buf`` starts in memory. For a writable buffer (a received array not yet forwarded) ctypes
    reads it in a tenth of the time numpy's ``__array_interface__`` takes, which builds a dict."""
    if not buf.readonly:
        return ctypes.addressof(ctypes.c_char.from_buffer(buf))
    exporter = buf.obj
    if isinstance(exporter, np.ndarray) and exporter.nbytes == buf.nbytes:
        return int(exporter.__array_interface__["data"][0])
    return int(np.frombuffer(buf, np.uint8).__array_interface__["data"][0])


def _store_exists(name: str) -> bool:
    now = time.monotonic()
    if now - _seen.get(name, -STORE_CHECK_S) < STORE_CHECK_S:
        return True
    if not os.path.exists(segment_path(name)):
        _seen.pop(name, None)
        return False
    if len(_seen) > 256:
        _seen.clear()
    _seen[name] = now
    return True


def locate(enc: Encoded) -> list[Part | None] | None:
    """Per buffer of ``enc``, where it lies in a leased view (None: not in one, to be copied); None when no
    buffer lies in one (the message is copied whole: the common case)."""
    if not LEASES:  # this process holds no received message: nothing to forward
        return None
    parts: list[Part | None] = []
    found = False
    seen: Lease | None = None  # the lease of the buffer before: a message's buffers share one
    for buf in enc.buffers:
        exporter = buf.obj
        part = None
        if isinstance(exporter, np.ndarray) and buf.nbytes:
            base = exporter.base  # a received array's base is the view its message was leased as
            lease = LEASES.get(id(base)) if base is not None else None
            if lease is None:
                lease = LEASES.get(id(exporter))  # or it is that view
            view = lease.view() if lease is not None else None
            if lease is not None and view is not None and (view is base or view is exporter):
                start = _address(buf) - lease.address
                # inside the view, and its store can still be mapped (if its publisher closed, nobody new
                # can map it, so copy)
                if start >= 0 and start + buf.nbytes <= lease.size \
                        and (lease is seen or _store_exists(lease.store)):
                    part = Part(lease, view, lease.offset + start)
                    found, seen = True, lease
        parts.append(part)
    return parts if found else None


def lock(enc: Encoded, parts: list[Part | None]) -> None:
    """Make the arrays behind forwarded buffers read-only in the forwarder (it now shares them)."""
    for buf, part in zip(enc.buffers, parts, strict=True):
        if part is not None and isinstance(buf.obj, np.ndarray):  # it is (``_part`` checked)
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
