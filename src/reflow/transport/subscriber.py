"""The subscriber's side of a topic: ``Subscriber.recv`` and the ROS-like ``subscribe(topic, callback)``.

The protocol is in ``pubsub``.

Waiting. Waking a sleeping process costs more than the rest of a small message (on a VM, an inter-processor
interrupt: ~20 us, against ~4 us for a round trip between two processes that stay awake), so ``recv`` spins
before it sleeps: it polls its socket, without blocking, for up to ``spin`` seconds (200 us by default), then
sleeps in ``poll``. The spin is adaptive: it lasts twice the last wait, at least ``spin`` and at most
``SPIN_STRETCH`` times that (so an answer that includes the peer's copy of a 1 MB message is still caught:
a round trip drops from ~400 to ~280 us here), and a subscriber whose last wait ran past that longest spin
sleeps straight away until a wait is short again. A slow or idle topic therefore costs no spinning, and
``spin=0`` turns it off. Sockets are non-blocking, so neither side pays a ``poll`` syscall per
message when data or buffer space is already there.

Closing. A subscriber that closes (or is dropped without closing) while its process lives on keeps the
arrays it received valid and unchanged: the publisher keeps their blocks and its slot until they are dropped.
What it never read is released at ``close``: reading is shut down first (the publisher's later sends then
fail, and it releases them itself), then the frames already queued are drained and released.
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any

import numpy as np

from reflow.errors import ChannelClosed, TransportError
from reflow.transport import wire
from reflow.transport.forward import ForeignStores
from reflow.transport.pubsub import SPIN, SPIN_STRETCH, address
from reflow.transport.serialize import decode
from reflow.transport.store import StoreReader


class Subscriber:
    """Receives the messages of ``topic``; ``recv`` returns values whose arrays view the publisher's store."""

    def __init__(self, topic: str, bus: str = "default", *, spin: float = SPIN) -> None:
        if spin < 0:
            raise ValueError(f"topic {topic!r}: spin must be >= 0 seconds, got {spin}")
        self.topic, self.bus, self.spin = topic, bus, spin
        self._addr = address(topic, bus)
        self._sock: socket.socket | None = None
        self._poll = select.poll()
        self._reader: StoreReader | None = None
        self._foreign = ForeignStores(topic)  # stores that forwarded messages lie in
        self._welcome: wire.Welcome | None = None
        self._buf = bytearray(4096)
        self._last_wait = 0.0  # seconds the last frame took to arrive once we waited for it
        self._closed = False
        self.received = 0
        self.spun = 0  # frames caught while spinning, i.e. without sleeping

    def _connect(self, deadline: float | None) -> socket.socket:
        """Connect to the publisher, waiting for it to appear if it does not exist yet."""
        while True:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            try:
                s.connect(self._addr)
                break
            except (ConnectionRefusedError, FileNotFoundError):
                s.close()
                if deadline is not None and time.monotonic() > deadline:
                    raise TimeoutError(
                        f"topic {self.topic!r} on bus {self.bus!r} has no publisher yet") from None
                time.sleep(0.002)
        s.setblocking(False)
        self._poll.register(s, select.POLLIN)
        return s

    def _greet(self, frame: memoryview) -> None:
        """Handle the publisher's welcome, always the first frame: map its store, size the receive buffer
        (or raise the publisher's refusal)."""
        reason = wire.refusal(frame)
        if reason is not None:
            raise TransportError(reason)
        w = wire.parse_welcome(frame)
        self._welcome = w
        self._reader = StoreReader(w.store, w.max_readers, w.max_blocks)
        self._buf = bytearray(w.inline_bytes + 4096)

    def wait_connected(self, timeout: float = 10.0) -> None:
        """Connect now (a publisher only sends to subscribers connected at publish time; the connection is
        queued in the kernel until the publisher next publishes or calls ``wait_for_subscribers``)."""
        if self._sock is None:
            self._sock = self._connect(time.monotonic() + timeout)

    def fileno(self) -> int:
        """The socket's file descriptor, readable when a message has arrived: for an event loop to watch
        (``loop.add_reader(sub.fileno(), ...)``, then ``recv(timeout=0)`` until it raises TimeoutError)."""
        if self._sock is None:
            self._sock = self._connect(None)
        return self._sock.fileno()

    def recv(self, timeout: float | None = None) -> Any:
        """The next message; ``timeout`` in seconds (``TimeoutError``), ``None`` to wait for ever."""
        if self._closed:
            raise TransportError(f"topic {self.topic!r}: recv after close")
        deadline = None if timeout is None else time.monotonic() + timeout
        if self._sock is None:
            self._sock = self._connect(deadline)
        mv = self._frame(self._sock, deadline, timeout)
        if self._welcome is None:
            self._greet(mv)
            mv = self._frame(self._sock, deadline, timeout)
        self.received += 1
        f = wire.parse(mv)
        plan = f.plan
        if not plan.sizes:  # a plain pickle, or an empty array
            if f.tag != wire.TAG_INLINE:
                assert self._reader is not None and self._welcome is not None
                self._reader.release(f.block_id, self._welcome.slot)
            return decode(plan.kind, plan.header, [])
        assert plan.build is not None  # every received plan with buffers has one
        if f.tag == wire.TAG_INLINE:  # laid out as in a block, in a copy of our own
            return plan.build(np.frombuffer(bytearray(mv[f.data_start:]), np.uint8))
        assert self._reader is not None and self._welcome is not None
        segment = self._reader.segment
        if f.stores is not None:
            if f.where is not None:  # forwarded in parts: each buffer where it lies
                segments = [self._foreign.segment(name) for name in f.stores]
                parts = [(segment, f.offset + o, size) if i == wire.OWN else (segments[i], o, size)
                         for (i, o), size in zip(f.where, plan.sizes, strict=True)]
                views = self._reader.lease_parts(f.block_id, self._welcome.slot, parts)
                return decode(plan.kind, plan.header, views)
            segment = self._foreign.segment(f.stores[0])  # forwarded whole: it lies elsewhere
        # the values made from the view hold it: the block is released when the last of them goes
        return plan.build(self._reader.lease(f.block_id, self._welcome.slot, f.offset, plan.span, segment))

    def _frame(self, sock: socket.socket, deadline: float | None, timeout: float | None) -> memoryview:
        try:
            try:
                n = sock.recv_into(self._buf)
            except BlockingIOError:
                n = self._wait(sock, deadline, timeout)
        except ConnectionResetError:
            n = 0
        if n == 0:
            raise ChannelClosed(f"the publisher of topic {self.topic!r} closed or died")
        return memoryview(self._buf)[:n]

    def _wait(self, sock: socket.socket, deadline: float | None, timeout: float | None) -> int:
        """Receive a frame that is not there yet: spin if the peer has been fast, else sleep in ``poll``."""
        start = time.monotonic()
        longest = self.spin * SPIN_STRETCH
        if self.spin and self._last_wait <= longest:
            # Spin for twice the last wait (a large message's answer includes the peer's copy of it): one
            # sleep and wake-up costs tens of microseconds, more than spinning through a short wait.
            spin = min(longest, max(self.spin, 2 * self._last_wait))
            stop = start + spin if deadline is None else min(start + spin, deadline)
            while True:
                try:
                    n = sock.recv_into(self._buf)
                except BlockingIOError:
                    if time.monotonic() < stop:
                        os.sched_yield()  # a peer waiting for this CPU runs now, not after the spin
                        continue
                    break
                self._last_wait = time.monotonic() - start
                self.spun += 1
                return n
        while True:
            ms = -1
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    self._last_wait = float("inf")
                    raise TimeoutError(f"no message on topic {self.topic!r} within {timeout}s")
                ms = max(1, round(left * 1000))
            if not self._poll.poll(ms):
                continue
            try:
                n = sock.recv_into(self._buf)
            except BlockingIOError:
                continue
            self._last_wait = time.monotonic() - start
            return n

    def close(self) -> None:
        """Disconnect; arrays already received stay valid, and unchanged, while referenced. Idempotent.

        The publisher keeps their blocks until they are dropped (it sees that this process lives on). So
        that it does not wait for messages this subscriber never read, those are released here: reading is
        shut down first (the publisher's later sends then fail, and it releases them itself), then the
        frames already queued are drained and released."""
        if self._closed:
            return
        self._closed = True
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RD)
                self._release_queued(self._sock)
            self._sock.close()
        if self._reader is not None:
            self._reader.close()
        self._foreign.close()

    def __del__(self) -> None:
        # A subscriber dropped without close() must still release what it never read: its process lives
        # on, so the publisher would keep those blocks for it.
        with contextlib.suppress(Exception):
            self.close()

    def _release_queued(self, sock: socket.socket) -> None:
        """Release the blocks of the frames still queued on ``sock`` (never read)."""
        while True:
            try:
                n = sock.recv_into(self._buf)
            except (BlockingIOError, InterruptedError):
                return
            if n == 0:
                return
            frame = memoryview(self._buf)[:n]
            if self._welcome is None:
                if wire.refusal(frame) is not None:
                    return
                self._greet(frame)
                continue
            f = wire.parse(frame)
            if f.tag != wire.TAG_INLINE and self._reader is not None:
                self._reader.release(f.block_id, self._welcome.slot)

    def __enter__(self) -> Subscriber:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


class Subscription:
    """A subscriber whose messages go to ``callback`` on a background thread, in order, until ``close()``.

    An exception in the callback stops the subscription; ``close()`` re-raises it so it is never lost.
    """

    def __init__(self, topic: str, callback: Callable[[Any], None], bus: str = "default", *,
                 spin: float = SPIN) -> None:
        self.subscriber = Subscriber(topic, bus, spin=spin)
        self._callback = callback
        self._stop = threading.Event()
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._loop, name=f"reflow-sub-{topic}", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                value = self.subscriber.recv(timeout=0.05)
            except TimeoutError:
                continue
            except ChannelClosed:
                return
            try:
                self._callback(value)
            except BaseException as exc:
                self.error = exc
                return

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.subscriber.close()
        if self.error is not None:
            err, self.error = self.error, None
            raise TransportError(f"the callback of topic {self.subscriber.topic!r} raised: {err!r}") from err

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        with contextlib.suppress(TransportError) if et is not None else contextlib.nullcontext():
            self.close()


def subscribe(topic: str, callback: Callable[[Any], None], bus: str = "default", *,
              spin: float = SPIN) -> Subscription:
    """The ROS-like entry point: call ``callback(value)`` for every message on ``topic``."""
    return Subscription(topic, callback, bus, spin=spin)
