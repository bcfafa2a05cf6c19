"""Bodies of the child processes the transport tests start (their own module, so ``spawn`` can import it)."""

from __future__ import annotations

import numpy as np

from reflow.transport import Channel, Subscriber


def echo(name: str, count: int, report: bool = False) -> None:
    """Side ``b`` of channel ``name``: send back each of ``count`` messages as received (large ones are
    forwarded, not copied); with ``report``, then send the publisher's ``(forwarded, stored)`` counts."""
    with Channel(name, "b") as ch:
        for _ in range(count):
            ch.send(ch.recv(timeout=20))
        if report:
            ch.send((ch.out.stats.forwarded, ch.out.stats.stored))


def sum_subscriber(topic: str, count: int, reply: str) -> None:
    """Receive ``count`` arrays on ``topic``; answer on channel ``reply`` with their sums."""
    with Subscriber(topic) as sub, Channel(reply, "b") as ch:
        sub.wait_connected()
        ch.send("ready")
        sums = [float(np.asarray(sub.recv(timeout=20)).sum()) for _ in range(count)]
        ch.send(sums)


def stalled_subscriber(topic: str, reply: str) -> None:
    """Connect to ``topic``, then never read: the slow subscriber of the back-pressure test."""
    with Subscriber(topic) as sub, Channel(reply, "b") as ch:
        sub.wait_connected()
        ch.send("ready")
        ch.recv(timeout=30)  # wait for "done", reading nothing from the topic


def loan_echo(name: str, count: int) -> None:
    """Side ``b`` of channel ``name``: copy each of ``count`` arrays into a loaned block and send that back
    (no copy on send); then send how many messages left from a loan."""
    with Channel(name, "b") as ch:
        for _ in range(count):
            got = ch.recv(timeout=20)
            with ch.loan(got.shape, got.dtype) as out:
                out[...] = got
                del got
                ch.send(out)
        ch.send(ch.out.stats.loaned)



def holding_subscriber(topic: str, reply: str) -> None:
    """Receive one message on ``topic`` and keep it; say "holding" on channel ``reply``, then wait to be
    killed."""
    with Subscriber(topic) as sub, Channel(reply, "b") as ch:
        sub.wait_connected()
        ch.send("ready")
        kept = sub.recv(timeout=20)
        ch.send("holding")
        ch.recv(timeout=60)
        del kept
