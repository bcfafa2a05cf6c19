"""Named topics between processes: ``publisher(topic)`` and ``subscribe(topic, callback)``, ROS style.

How a message moves (the eager protocol). A publisher listens on a unix ``SOCK_SEQPACKET`` socket in the
abstract namespace (``\\0reflow/<bus>/<topic>``: nothing on disk, gone when the process is). Each subscriber
connects once and is given a reader slot. ``publish`` encodes the value (``serialize``); a message up to
``inline_bytes`` (64 KiB) is sent whole, one ``send`` per subscriber; a larger one is copied *once* into the
publisher's object store and each subscriber gets a handle frame of a few dozen bytes, so broadcasting to
more subscribers adds only small sends, never copies. The subscriber maps the store and returns numpy views
on it (zero-copy); the block is released when the last view is garbage collected. A producer that can write
its message in place saves the one copy too: ``pub.loan(shape, dtype)`` lends it a block of the store as an
array, and publishing that array sends only the handle (``loan``). Received arrays published again are not
copied either: they are *forwarded* as references to the blocks they already lie in (``forward``).

The subscriber's side (``recv``, how it waits, what ``close`` releases) is in ``subscriber.py``.

Back-pressure. Every subscriber socket has a bounded kernel queue, and the store is bounded: a subscriber that
does not keep up first fills its queue, then holds store blocks; ``publish`` then waits, and after
``timeout`` seconds raises ``BackPressureError`` naming the topic. Memory never grows without bound.

Documented behaviour: a subscriber to a topic with no publisher yet simply waits (``recv`` with a timeout
raises ``TimeoutError`` naming the topic); publishing with no subscribers drops the message, as in ROS; a
second publisher on one topic raises ``TransportError``; a closed publisher makes ``recv`` raise
``ChannelClosed``. A new subscriber receives the messages published from the moment the publisher has seen
it: within a millisecond of connecting while the publisher publishes (looking costs a syscall, so it looks at
most once per millisecond), or at once after ``wait_for_subscribers``.
"""

from __future__ import annotations

import contextlib
import errno
import select
import socket
import struct
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal, overload

from numpy.typing import DTypeLike

from reflow.errors import BackPressureError, TransportError
from reflow.transport import wire
from reflow.transport.forward import Part, locate, lock
from reflow.transport.loan import LoanedArray, Loans, Shape
from reflow.transport.serialize import Encoded, Stats, encode
from reflow.transport.shm import process_alive
from reflow.transport.store import Block, ObjectStore

INLINE_BYTES = 64 * 1024
MAX_INLINE = 128 * 1024  # a SOCK_SEQPACKET frame must fit the socket's send buffer (~208 KiB by default)
STORE_BYTES = 256 * 1024 * 1024
_PEERCRED = struct.Struct("3i")  # pid, uid, gid of a unix socket's peer
MAX_SUBSCRIBERS = 32
ACCEPT_EVERY = 1e-3  # seconds between looks for new subscribers while publishing
SPIN = 200e-6  # seconds a subscriber polls before it sleeps, while its peer answers within that...
SPIN_STRETCH = 5  # ...or longer, up to this many times as long, for a peer that takes longer to answer


def address(topic: str, bus: str = "default") -> str:
    """The abstract-namespace socket address of a topic."""
    if not topic or "\0" in topic:
        raise ValueError(f"bad topic name {topic!r}: use a non-empty name without NUL bytes")
    return f"\0reflow/{bus}/{topic}"


@dataclass
class PublisherStats:
    """What the publisher did: encodings chosen, and messages sent inline, copied into the store, sent from
    a loaned block without a copy, or forwarded from the block a received message lies in."""

    encoding: Stats = field(default_factory=Stats)
    inline: int = 0
    stored: int = 0
    loaned: int = 0
    forwarded: int = 0
    dropped_no_subscribers: int = 0


class Publisher:
    """The only publisher of ``topic`` on ``bus``. Use as a context manager, or call ``close()``."""

    def __init__(self, topic: str, bus: str = "default", *, store_bytes: int = STORE_BYTES,
                 inline_bytes: int = INLINE_BYTES, max_subscribers: int = MAX_SUBSCRIBERS,
                 timeout: float = 10.0) -> None:
        if not 0 <= inline_bytes <= MAX_INLINE:
            raise ValueError(f"topic {topic!r}: inline_bytes must be in 0..{MAX_INLINE} (one socket frame), "
                             f"got {inline_bytes}")
        self.topic, self.bus, self.timeout = topic, bus, timeout
        self.inline_bytes = inline_bytes
        self.stats = PublisherStats()
        self._listen = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self._listen.bind(address(topic, bus))
        except OSError as exc:
            self._listen.close()
            if exc.errno == errno.EADDRINUSE:
                raise TransportError(f"topic {topic!r} on bus {bus!r} already has a publisher; a topic has "
                                     "exactly one: close the other one or use another topic name") from exc
            raise
        self._listen.listen(max_subscribers)
        self._listen.setblocking(False)
        try:
            self.store = ObjectStore(store_bytes, max_readers=max_subscribers, name=f"topic {topic!r}")
        except BaseException:
            self._listen.close()
            raise
        self._loans = Loans(self.store, topic, inline_bytes)
        self._subs: dict[int, socket.socket] = {}  # slot -> connection (non-blocking)
        self._pids: dict[int, int] = {}  # slot -> the subscriber's process id (from the socket)
        self._departed: dict[int, int] = {}  # slot -> pid: gone, but may still read blocks it received
        self._readers: tuple[int, ...] = ()  # sorted slots, the readers of every new store block
        self._free_slots = list(range(max_subscribers - 1, -1, -1))
        self._next_accept = 0.0
        self._closed = False

    @property
    def subscribers(self) -> int:
        """Number of connected subscribers (after accepting any that are waiting)."""
        self._accept()
        return len(self._subs)

    def wait_for_subscribers(self, n: int, timeout: float = 10.0) -> None:
        """Block until at least ``n`` subscribers are connected (messages only reach connected ones)."""
        deadline = time.monotonic() + timeout
        while self.subscribers < n:
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"topic {self.topic!r}: {len(self._subs)} of {n} subscribers after {timeout}s")
            time.sleep(0.001)

    def _accept(self) -> None:
        if self._departed:
            self._settle_departed()
        while True:
            try:
                conn, _ = self._listen.accept()
            except (BlockingIOError, InterruptedError):
                return
            if not self._free_slots:
                held = len(self._departed)
                with contextlib.suppress(OSError):
                    conn.send(wire.refusal_frame(
                        f"topic {self.topic!r}: all {self.store.max_readers} subscriber slots are taken"
                        + (f", {held} of them by closed subscribers whose received arrays are still alive"
                           if held else "")
                        + "; close subscribers (and drop arrays received by closed ones), or create the "
                        "publisher with a larger max_subscribers"))
                conn.close()
                continue
            slot = self._free_slots.pop()
            with contextlib.suppress(OSError):
                self._pids[slot] = _PEERCRED.unpack(conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                                                    _PEERCRED.size))[0]
            conn.setblocking(False)
            conn.send(wire.welcome_frame(wire.Welcome(slot, self.store.max_readers, self.store.max_blocks,
                                                      self.inline_bytes, self.store.name)))
            self._subs[slot] = conn
            self._readers = tuple(sorted(self._subs))

    def _drop(self, slot: int) -> None:
        """A subscriber went away. If its process lives on, it may still read arrays it received: its
        blocks stay held (and its slot unused) until it releases them or its process ends."""
        self._subs.pop(slot).close()
        self._readers = tuple(sorted(self._subs))
        pid = self._pids.pop(slot, None)
        if pid is not None and process_alive(pid):
            self._departed[slot] = pid
        else:
            self.store.drop_reader(slot)
            self._free_slots.append(slot)

    def _settle_departed(self) -> None:
        """Free the slots of departed subscribers that released everything or whose process ended."""
        for slot, pid in list(self._departed.items()):
            if self.store.holds(slot):
                if process_alive(pid):
                    continue
                self.store.drop_reader(slot)
            del self._departed[slot]
            self._free_slots.append(slot)

    @overload
    def loan(self, shape: Shape, dtype: DTypeLike, *, like: Literal["numpy"] = "numpy",
             timeout: float | None = None) -> LoanedArray: ...

    @overload
    def loan(self, shape: Shape, dtype: Any, *, like: Literal["torch"],
             timeout: float | None = None) -> Any: ...

    def loan(self, shape: Shape, dtype: Any, *, like: Literal["numpy", "torch"] = "numpy",
             timeout: float | None = None) -> Any:
        """A block of the store as an uninitialised array to write the next message into; ``publish`` it to
        send it without a copy (rules: ``reflow.transport.loan``). Waits for room like ``publish``."""
        if self._closed:
            raise TransportError(f"topic {self.topic!r}: loan after close")
        timeout = self.timeout if timeout is None else timeout
        if like == "numpy":
            return self._loans.lend_array(shape, dtype, timeout)
        return self._loans.lend(shape, dtype, like, timeout)

    def publish(self, value: Any) -> None:
        """Send ``value`` to every connected subscriber (see the module docstring for how)."""
        if self._closed:
            raise TransportError(f"topic {self.topic!r}: publish after close")
        if time.monotonic() >= self._next_accept:  # an accept() is a syscall: at most one per ms
            self._accept()
            self._next_accept = time.monotonic() + ACCEPT_EVERY
        # a loan can be involved only if this publisher lent some, or the value is another's loaned array
        loan = self._loans.claim(value) if self._loans.by_address or type(value) is LoanedArray else None
        enc = encode(value, self.stats.encoding)
        if not self._subs:
            self.stats.dropped_no_subscribers += 1
            return
        plan = wire.plan(enc)
        held: int | None = None  # the block the frame hands out, which each subscriber must release
        if loan is not None and loan.block is not None and enc.kind == "raw" \
                and plan.nbytes > self.inline_bytes:
            self.store.share(loan.block, self._readers)  # the message is already in the store: no copy
            frame = wire.handle_frame(plan, loan.block.id, loan.block.offset)
            held = loan.block.id
            self.stats.loaned += 1
        elif plan.nbytes <= self.inline_bytes:
            frame = wire.inline_frame(plan, enc.buffers)
            self.stats.inline += 1
        else:
            if self._departed:
                self._settle_departed()
            parts = locate(enc)
            frame, held = self._store(enc, plan) if parts is None else self._forward(enc, plan, parts)
        for slot, conn in list(self._subs.items()):
            try:
                try:
                    conn.send(frame)
                except BlockingIOError:
                    self._send_when_room(slot, conn, frame)
            except (BrokenPipeError, ConnectionResetError):
                if held is not None:
                    self.store.release(held, slot)  # it never got there
                self._drop(slot)

    def _store(self, enc: Encoded, plan: wire.Plan) -> tuple[bytes, int]:
        """Copy the message into a block of the store: a handle frame, and the block's id."""
        block = self.store.alloc(plan.total, self._readers, self.timeout)
        self._copy_in(block, enc.buffers, plan.offsets)
        self.stats.stored += 1
        return wire.handle_frame(plan, block.id, block.offset), block.id

    def _forward(self, enc: Encoded, plan: wire.Plan, parts: list[Part | None]) -> tuple[bytes, int]:
        """Send the buffers that lie in leased views from there, copy the others into a block of the store
        (which keeps those views alive): a forward frame, and the block's id."""
        first = parts[0]
        if first is not None and all(part is not None and part.view is first.view
                                     and part.offset - first.offset == off
                                     for part, off in zip(parts, plan.offsets, strict=True)):
            # forwarded whole, laid out as received (an echo, a relay): name where it lies, copy nothing
            block = self.store.alloc(0, self._readers, self.timeout, keep=[first.view])
            lock(enc, parts)
            self.stats.forwarded += 1
            return wire.elsewhere_frame(plan, block.id, first.lease.store, first.offset), block.id
        where: list[tuple[int, int]] = []  # per buffer: (store index or OWN, offset there)
        stores: dict[str, int] = {}
        views: dict[int, Any] = {}  # the leased views to keep alive, once each
        mine: list[int] = []  # the buffers to copy
        pos = 0
        for i, part in enumerate(parts):
            if part is None:
                mine.append(i)
                where.append((wire.OWN, pos))
                pos += (plan.sizes[i] + wire.ALIGN - 1) // wire.ALIGN * wire.ALIGN
            else:
                where.append((stores.setdefault(part.lease.store, len(stores)), part.offset))
                views[id(part.view)] = part.view
        block = self.store.alloc(pos, self._readers, self.timeout, keep=list(views.values()))
        if mine:
            self._copy_in(block, [enc.buffers[i] for i in mine], [where[i][1] for i in mine])
        lock(enc, parts)
        self.stats.forwarded += 1
        return wire.forward_frame(plan, block.id, block.offset, where, list(stores)), block.id

    def _copy_in(self, block: Block, buffers: Sequence[memoryview], offsets: Sequence[int]) -> None:
        """The one copy of a message: ``buffers`` into ``block`` at ``offsets`` (a memoryview slice
        assignment is one memcpy, with no array made for it)."""
        dst = self.store.segment.buf
        for buf, off in zip(buffers, offsets, strict=True):
            start = block.offset + off
            dst[start:start + buf.nbytes] = buf

    def _send_when_room(self, slot: int, conn: socket.socket, frame: bytes) -> None:
        """The subscriber's queue is full: wait up to ``timeout`` for it to read (back-pressure)."""
        deadline = time.monotonic() + self.timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([], [conn], [], left)[1]:
                raise BackPressureError(
                    f"topic {self.topic!r}: subscriber in slot {slot} has not read for {self.timeout}s "
                    "and its queue is full; consume faster or raise the publisher timeout")
            try:
                conn.send(frame)
                return
            except BlockingIOError:
                continue

    def close(self) -> None:
        """Disconnect every subscriber and free the store. Idempotent."""
        if self._closed:
            return
        self._closed = True
        for slot in list(self._subs):
            self._subs.pop(slot).close()
        self._listen.close()
        self._loans.close()
        self.store.close()

    def __enter__(self) -> Publisher:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def publisher(topic: str, bus: str = "default", **options: Any) -> Publisher:
    """The ROS-like entry point: a publisher on ``topic`` (options: see ``Publisher``)."""
    return Publisher(topic, bus, **options)
