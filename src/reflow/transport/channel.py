"""A point-to-point, two-way channel between two processes, built from two topics.

A ``Channel`` named ``n`` has two sides, ``"a"`` and ``"b"``: side ``a`` publishes on ``n/a`` and subscribes
to ``n/b``, side ``b`` the reverse, so both directions get the eager protocol of ``pubsub`` (inline small
messages, store handles for large ones) and each side owns the store it sends from. Unlike a topic, a channel
never drops a message: ``connect`` waits until both directions are connected before anything is sent.
``spin`` is the receiving side's spin before sleeping (see ``subscriber``); other options go to the publisher.
``loan`` lends a block of this side's store to write the next message into (``reflow.transport.loan``).
"""

from __future__ import annotations

from types import TracebackType
from typing import Any, Literal, overload

from numpy.typing import DTypeLike

from reflow.transport.loan import LoanedArray, Shape
from reflow.transport.pubsub import SPIN, Publisher
from reflow.transport.subscriber import Subscriber

Side = Literal["a", "b"]


class Channel:
    """One side of a named two-way channel; use as a context manager (it connects on entry)."""

    def __init__(self, name: str, side: Side, bus: str = "default", *, spin: float = SPIN,
                 **options: Any) -> None:
        other = "b" if side == "a" else "a"
        self.name, self.side = name, side
        self.out = Publisher(f"{name}/{side}", bus, **options)
        try:
            self.inp = Subscriber(f"{name}/{other}", bus, spin=spin)
        except BaseException:
            self.out.close()
            raise

    def connect(self, timeout: float = 10.0) -> Channel:
        """Wait until the other side is there (both directions connected)."""
        self.inp.wait_connected(timeout)
        self.out.wait_for_subscribers(1, timeout)
        return self

    @overload
    def loan(self, shape: Shape, dtype: DTypeLike, *, like: Literal["numpy"] = "numpy",
             timeout: float | None = None) -> LoanedArray: ...

    @overload
    def loan(self, shape: Shape, dtype: Any, *, like: Literal["torch"],
             timeout: float | None = None) -> Any: ...

    def loan(self, shape: Shape, dtype: Any, *, like: Literal["numpy", "torch"] = "numpy",
             timeout: float | None = None) -> Any:
        """A block of this side's store to build the next message in; ``send`` it without a copy."""
        return self.out.loan(shape, dtype, like=like, timeout=timeout)

    def send(self, value: Any) -> None:
        self.out.publish(value)

    def recv(self, timeout: float | None = None) -> Any:
        return self.inp.recv(timeout)

    def close(self) -> None:
        # The publisher first: forwarded messages it still keeps release their blocks while the
        # subscriber can still say so to the other side.
        self.out.close()
        self.inp.close()

    def __enter__(self) -> Channel:
        return self.connect()

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
