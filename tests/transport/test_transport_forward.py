"""Forwarding: received arrays published again go out as references to where they lie, not as copies.

Behaviour only: what is forwarded and what is copied, that forwarded data stays intact while anyone holds it,
and that every block comes back once everyone let go.
"""

from __future__ import annotations

import gc
import multiprocessing as mp
import os
import threading
from collections.abc import Iterator
from contextlib import ExitStack

import numpy as np
import pytest
import transport_peers as peers

from reflow.transport import Channel, Publisher, Subscriber

CTX = mp.get_context("spawn")
MB = 1 << 20


def unique(name: str) -> str:
    return f"{name}-{os.getpid()}-{threading.get_ident()}"


Relay = tuple[Publisher, Subscriber, Publisher, Subscriber]


@pytest.fixture
def relay(no_leaks: None) -> Iterator[Relay]:
    """source -> middle (subscribes, republishes) -> sink, two topics in this process."""
    first, second = unique("fw-in"), unique("fw-out")
    with ExitStack() as stack:
        src = stack.enter_context(Publisher(first, store_bytes=8 * MB, timeout=0.3))
        mid_in = stack.enter_context(Subscriber(first))
        mid_out = stack.enter_context(Publisher(second, store_bytes=8 * MB, timeout=0.3))
        sink = stack.enter_context(Subscriber(second))
        for sub, pub in ((mid_in, src), (sink, mid_out)):
            sub.wait_connected()
            pub.wait_for_subscribers(1)
        yield src, mid_in, mid_out, sink


def in_use(*pubs: Publisher) -> list[int]:
    gc.collect()
    for pub in pubs:  # forwarders first: releasing a proxy releases the block it kept
        pub.store.reclaim()
    return [pub.store.in_use() for pub in reversed(pubs)]


def test_a_relayed_array_is_forwarded_not_copied(relay: Relay) -> None:
    src, mid_in, mid_out, sink = relay
    x = np.arange(MB // 4, dtype=np.float32)
    src.publish(x)
    got = mid_in.recv(timeout=5)
    mid_out.publish(got)
    out = sink.recv(timeout=5)
    assert mid_out.stats.forwarded == 1 and mid_out.stats.stored == 0
    assert np.array_equal(out, x)
    assert not got.flags.writeable  # the forwarder now shares it with the sink
    del got, out
    assert in_use(mid_out, src) == [0, 0]


def test_the_source_block_lives_while_a_forward_of_it_is_held(relay: Relay) -> None:
    src, mid_in, mid_out, sink = relay
    src.publish(np.full(MB, 7, np.uint8))
    got = mid_in.recv(timeout=5)
    mid_out.publish(got)
    del got  # the forwarder is done with it, but the sink is not
    out = sink.recv(timeout=5)
    assert in_use(mid_out, src)[0] == MB
    for i in range(6):  # the source keeps publishing into its (8 MB) store: the held block is never reused
        src.publish(np.full(MB, i, np.uint8))
        assert int(mid_in.recv(timeout=5)[0]) == i
    assert int(out.min()) == int(out.max()) == 7
    del out
    assert in_use(mid_out, src) == [0, 0]


def test_slices_dicts_and_structures_are_forwarded(relay: Relay) -> None:
    src, mid_in, mid_out, sink = relay
    x = np.arange(MB // 8, dtype=np.int64)
    src.publish(x)
    mid_out.publish(mid_in.recv(timeout=5)[1000:])  # a suffix of a received array
    assert np.array_equal(sink.recv(timeout=5), x[1000:])
    src.publish({"obs": x, "reward": x[::-1].copy()})  # sent as one message of two buffers
    mid_out.publish(mid_in.recv(timeout=5))
    got = sink.recv(timeout=5)
    assert np.array_equal(got["obs"], x) and np.array_equal(got["reward"], x[::-1])
    src.publish(("meta", x, [x[:3]]))  # a pickled structure with an out-of-band buffer
    mid_out.publish(mid_in.recv(timeout=5))
    meta, arr, small = sink.recv(timeout=5)
    assert meta == "meta" and np.array_equal(arr, x) and np.array_equal(small[0], x[:3])
    assert mid_out.stats.forwarded == 3 and mid_out.stats.stored == 0
    del got, arr, small
    assert in_use(mid_out, src) == [0, 0]


def test_a_forwarded_array_and_its_slices_are_forwarded_again(relay: Relay) -> None:
    src, mid_in, mid_out, sink = relay
    x = np.arange(MB // 8, dtype=np.int64)
    src.publish(x)
    got = mid_in.recv(timeout=5)
    mid_out.publish(got[50_000:])  # found through a writable buffer...
    mid_out.publish(got)
    mid_out.publish(got[1000:])  # ...and, read-only since it was forwarded, through numpy
    assert np.array_equal(sink.recv(timeout=5), x[50_000:])
    assert np.array_equal(sink.recv(timeout=5), x)
    assert np.array_equal(sink.recv(timeout=5), x[1000:])
    assert mid_out.stats.forwarded == 3 and mid_out.stats.stored == 0
    del got
    assert in_use(mid_out, src) == [0, 0]


def test_what_does_not_lie_in_a_received_block_is_copied(relay: Relay) -> None:
    src, mid_in, mid_out, sink = relay
    x = np.arange(MB // 8, dtype=np.int64)
    src.publish(x)
    got = mid_in.recv(timeout=5)
    mid_out.publish(got[::2])  # not contiguous: made contiguous, so a new array
    c = sink.recv(timeout=5)
    mid_out.publish(got + 1)  # computed from it
    d = sink.recv(timeout=5)
    mid_out.publish(got[:100])  # small: inline, as always
    e = sink.recv(timeout=5)
    assert mid_out.stats.forwarded == 0 and mid_out.stats.stored == 2 and mid_out.stats.inline == 1
    assert np.array_equal(c, x[::2]) and np.array_equal(d, x + 1) and np.array_equal(e, x[:100])
    assert got.flags.writeable  # nothing was shared, so the forwarder may still write it
    del got, c, d, e
    assert in_use(mid_out, src) == [0, 0]


def test_pieces_of_several_messages_and_new_arrays_travel_together(relay: Relay) -> None:
    src, mid_in, mid_out, sink = relay
    src.publish(np.full(MB, 1, np.uint8))
    first = mid_in.recv(timeout=5)
    src.publish({"y": np.full(MB, 2, np.uint8), "z": np.full(MB // 2, 3, np.uint8)})
    second = mid_in.recv(timeout=5)
    fresh = np.full(MB // 4, 4, np.uint8)
    mid_out.publish({"a": first[100:], "b": fresh, "c": second["z"], "d": second["y"][:1000]})
    out = sink.recv(timeout=5)
    assert mid_out.stats.forwarded == 1 and mid_out.stats.stored == 0
    assert in_use(mid_out, src) == [2 * MB + MB // 2, MB // 4]  # only ``fresh`` was copied
    del first, second
    for value in (5, 6, 7):  # the source goes on; the blocks ``out`` still reads are not reused
        src.publish(np.full(MB, value, np.uint8))
        assert int(mid_in.recv(timeout=5)[0]) == value
    assert [int(out[k].min()) for k in "abcd"] == [1, 4, 3, 2]
    assert [int(out[k].max()) for k in "abcd"] == [1, 4, 3, 2]
    assert [out[k].size for k in "abcd"] == [MB - 100, MB // 4, MB // 2, 1000]
    del out
    assert in_use(mid_out, src) == [0, 0]


def test_a_suffix_that_ends_where_the_store_ends_is_forwarded(no_leaks: None) -> None:
    # The source's store holds exactly one message, so the suffix ends at the very end of its segment; a
    # reader must map just the suffix's bytes, not round its end up to the next 64-byte boundary.
    first, second = unique("fw-end-in"), unique("fw-end-out")
    with Publisher(first, store_bytes=MB) as src, Subscriber(first) as mid_in, \
            Publisher(second, store_bytes=MB) as mid_out, Subscriber(second) as sink:
        for sub, pub in ((mid_in, src), (sink, mid_out)):
            sub.wait_connected()
            pub.wait_for_subscribers(1)
        x = np.arange(MB, dtype=np.uint8)
        src.publish(x)
        got = mid_in.recv(timeout=5)
        mid_out.publish(got[1000:])  # 1 MB - 1000 bytes: not a multiple of 64
        assert np.array_equal(sink.recv(timeout=5), x[1000:])
        assert mid_out.stats.forwarded == 1 and mid_out.stats.stored == 0
        del got


def test_a_message_whose_publisher_closed_is_copied_when_relayed(relay: Relay) -> None:
    src, mid_in, mid_out, sink = relay
    src.publish(np.full(MB, 3, np.uint8))
    got = mid_in.recv(timeout=5)
    src.close()  # its store is unlinked; ``got`` stays valid memory
    mid_out.publish(got)
    assert mid_out.stats.forwarded == 0 and mid_out.stats.stored == 1
    assert int(sink.recv(timeout=5)[-1]) == 3


def test_an_echo_across_processes_sends_each_message_back_without_a_copy(no_leaks: None) -> None:
    name, count = unique("fwecho"), 8
    child = CTX.Process(target=peers.echo, args=(name, count, True))
    child.start()
    try:
        with Channel(name, "a", store_bytes=32 * MB) as ch:
            kept = []
            for i in range(count):
                big = np.full(3 * MB if i % 2 else MB, i, np.uint8)
                ch.send(big if i % 2 else {"a": big, "b": np.arange(i)})
                back = ch.recv(timeout=20)
                kept.append(back)  # held: the sender's next messages must not land in these blocks
            for i, back in enumerate(kept):
                arr = back if i % 2 else back["a"]
                assert int(arr.min()) == int(arr.max()) == i
            assert ch.recv(timeout=20) == (count, 0)  # forwarded every one, copied none
            del kept, back, arr
            assert in_use(ch.out) == [0]
    finally:
        child.join(20)
    assert child.exitcode == 0
