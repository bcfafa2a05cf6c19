"""Pub/sub and channels across processes: values arrive intact, large ones via the store, nothing leaks."""

from __future__ import annotations

import gc
import multiprocessing as mp
import os
import threading
from multiprocessing import resource_tracker
from typing import Any

import numpy as np
import pytest
import torch
import transport_peers as peers

from reflow.errors import BackPressureError, ChannelClosed, MessageTooLarge, TransportError
from reflow.transport import Channel, Publisher, Subscriber, publisher, subscribe
from reflow.transport.pubsub import SPIN_STRETCH
from reflow.transport.shm import unlink_segments_of

CTX = mp.get_context("spawn")


@pytest.fixture(autouse=True, scope="module")
def _resource_tracker() -> None:
    """Start multiprocessing's long-lived resource tracker before ``no_leaks`` takes its first census."""
    resource_tracker.ensure_running()


def unique(name: str) -> str:
    return f"{name}-{os.getpid()}-{threading.get_ident()}"


def start(target: Any, *args: Any) -> Any:
    p = CTX.Process(target=target, args=args)
    p.start()
    return p


VALUES: list[Any] = [
    7,
    {"k": "v", "n": [1, 2]},
    np.arange(10, dtype=np.int16),
    np.arange(50_000, dtype=np.float64).reshape(500, 100),  # 400 KB: through the store
    {"obs": np.ones((300, 300), np.float32), "step": 3},  # 360 KB structure: oob through the store
    {"obs": np.ones((200, 200), np.float32), "mask": torch.ones(10), "empty": np.zeros((0, 3))},  # arrays
    torch.arange(30_000, dtype=torch.float32),
    np.arange(64, dtype=np.float32).reshape(8, 8)[:, 1::2],  # non-contiguous
]


def same(a: Any, b: Any) -> bool:
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and bool(torch.equal(a, b))
    if isinstance(a, np.ndarray):
        return isinstance(b, np.ndarray) and a.dtype == b.dtype and np.array_equal(a, b)
    return bool(a == b)


def test_channel_round_trip_across_processes(no_leaks: None) -> None:
    name = unique("echo")
    child = start(peers.echo, name, len(VALUES))
    try:
        with Channel(name, "a") as ch:
            for v in VALUES:
                ch.send(v)
                assert same(v, ch.recv(timeout=20))
            assert ch.out.stats.stored == 4 and ch.out.stats.inline == 4
            assert dict(ch.out.stats.encoding.kinds) == {"small": 2, "raw": 4, "oob": 1, "arrays": 1}
    finally:
        child.join(20)
    assert child.exitcode == 0


def test_broadcast_reaches_every_subscriber_with_one_copy(no_leaks: None) -> None:
    topic, n, count = unique("bcast"), 3, 4
    replies = [unique(f"reply{i}") for i in range(n)]
    kids = [start(peers.sum_subscriber, topic, count, r) for r in replies]
    try:
        with Publisher(topic, store_bytes=8 << 20) as pub:
            chans = [Channel(r, "a").connect(20) for r in replies]
            assert [c.recv(timeout=20) for c in chans] == ["ready"] * n
            pub.wait_for_subscribers(n)
            arrays = [np.full(100_000, i, np.float64) for i in range(count)]
            for a in arrays:
                pub.publish(a)
            expected = [float(a.sum()) for a in arrays]
            assert [c.recv(timeout=20) for c in chans] == [expected] * n
            assert pub.stats.stored == count  # one store copy per message, whatever the subscriber count
            for c in chans:
                c.close()
    finally:
        for k in kids:
            k.join(20)
    assert [k.exitcode for k in kids] == [0] * n


def test_received_arrays_are_views_released_when_dropped(no_leaks: None) -> None:
    topic = unique("lease")
    with Publisher(topic, store_bytes=1 << 20) as pub, Subscriber(topic) as sub:
        sub.wait_connected()
        pub.wait_for_subscribers(1)
        pub.publish({"a": np.ones(100_000, np.uint8), "b": np.zeros(100_000, np.uint8)})
        got = sub.recv(timeout=5)
        assert not got["a"].flags.owndata  # a view on the publisher's store
        pub.store.reclaim()
        assert pub.store.in_use() > 0
        keep = got["b"]
        del got
        gc.collect()
        pub.store.reclaim()
        assert pub.store.in_use() > 0  # one view still alive holds the block
        del keep
        gc.collect()
        pub.store.reclaim()
        assert pub.store.in_use() == 0


def test_callback_api_delivers_in_order(no_leaks: None) -> None:
    topic, got, done = unique("cb"), [], threading.Event()

    def on_message(v: Any) -> None:
        got.append(v)
        if len(got) == 20:
            done.set()

    with publisher(topic) as pub, subscribe(topic, on_message):
        pub.wait_for_subscribers(1)
        for i in range(20):
            pub.publish({"i": i})
        assert done.wait(5)
    assert got == [{"i": i} for i in range(20)]


def test_callback_error_is_not_lost(no_leaks: None) -> None:
    topic = unique("cberr")

    def boom(v: Any) -> None:
        raise RuntimeError("bad message")

    with publisher(topic) as pub:
        sub = subscribe(topic, boom)
        pub.wait_for_subscribers(1)
        pub.publish(1)
        sub._thread.join(5)
        with pytest.raises(TransportError, match="bad message"):
            sub.close()


def test_slow_subscriber_gets_back_pressure_not_unbounded_memory(no_leaks: None) -> None:
    topic, reply = unique("slow"), unique("slowreply")
    child = start(peers.stalled_subscriber, topic, reply)
    try:
        with Publisher(topic, store_bytes=1 << 20, timeout=0.3) as pub, Channel(reply, "a") as ch:
            assert ch.recv(timeout=20) == "ready"
            pub.wait_for_subscribers(1)
            big = np.zeros(300_000, np.uint8)
            with pytest.raises(BackPressureError, match=topic):
                for _ in range(10):
                    pub.publish(big)
            assert pub.store.in_use() <= pub.store.capacity
            with pytest.raises(BackPressureError, match="queue is full"):
                for _ in range(100_000):
                    pub.publish(np.zeros(30_000, np.uint8))  # inline: fills the socket queue
            ch.send("done")
    finally:
        child.join(20)
    assert child.exitcode == 0


def test_message_larger_than_store(no_leaks: None) -> None:
    topic = unique("huge")
    with Publisher(topic, store_bytes=1 << 20) as pub, Subscriber(topic) as sub:
        sub.wait_connected()
        pub.wait_for_subscribers(1)
        with pytest.raises(MessageTooLarge, match="store_bytes"):
            pub.publish(np.zeros(2 << 20, np.uint8))


def test_topic_without_publisher_times_out_naming_it(no_leaks: None) -> None:
    topic = unique("nobody")
    with Subscriber(topic) as sub, pytest.raises(TimeoutError, match=topic):
        sub.recv(timeout=0.1)


def test_publish_without_subscribers_drops(no_leaks: None) -> None:
    with Publisher(unique("alone")) as pub:
        pub.publish(np.zeros(1 << 20))
        assert pub.stats.dropped_no_subscribers == 1 and pub.store.in_use() == 0


def test_second_publisher_on_a_topic_is_refused(no_leaks: None) -> None:
    topic = unique("twice")
    with Publisher(topic), pytest.raises(TransportError, match="already has a publisher"):
        Publisher(topic)


def test_closed_publisher_ends_the_subscriber(no_leaks: None) -> None:
    topic = unique("closing")
    sub = Subscriber(topic)
    with Publisher(topic) as pub:
        sub.wait_connected()
        pub.publish(1)
        assert sub.recv(timeout=5) == 1
    with pytest.raises(ChannelClosed, match=topic):
        sub.recv(timeout=5)
    sub.close()


@pytest.mark.parametrize("leave", ["close", "drop"])
def test_a_subscriber_that_goes_releases_what_it_never_read(leave: str, no_leaks: None) -> None:
    """Closed, or dropped without close(): the publisher drops it and gets back the blocks it never read."""
    topic = unique(f"gone-{leave}")
    with Publisher(topic, store_bytes=2 << 20) as pub:
        sub = Subscriber(topic)
        sub.wait_connected()
        pub.wait_for_subscribers(1)
        pub.publish(np.zeros(1 << 20, np.uint8))  # queued, never read
        if leave == "close":
            sub.close()
        del sub
        gc.collect()
        for _ in range(3):  # needs that block back: the store has room for two
            pub.publish(np.zeros(1 << 20, np.uint8))
        pub.store.reclaim()
        assert pub.subscribers == 0 and pub.store.in_use() == 0 and pub._departed == {}


def test_arrays_received_before_close_stay_intact(no_leaks: None) -> None:
    """A closed subscriber's arrays keep their blocks: the publisher, seeing its process alive, reuses
    neither them nor its slot until they are dropped."""
    topic = unique("afterclose")
    with Publisher(topic, store_bytes=4 << 20) as pub, Subscriber(topic) as other:
        sub = Subscriber(topic)
        sub.wait_connected()
        other.wait_connected()
        pub.wait_for_subscribers(2)
        pub.publish(np.full(1 << 20, 7, np.uint8))
        kept = sub.recv(timeout=5)
        other.recv(timeout=5)
        pub.publish(np.full(1 << 20, 8, np.uint8))  # queued for ``sub``, never read: released by close
        other.recv(timeout=5)
        sub.close()
        for i in range(6):  # a 4 MB store: the blocks would come round again if ``kept``'s were free
            pub.publish(np.full(1 << 20, 100 + i, np.uint8))
            assert int(other.recv(timeout=5)[0]) == 100 + i
        assert pub.subscribers == 1 and int(kept.min()) == int(kept.max()) == 7
        pub.store.reclaim()
        assert pub.store.in_use() <= 2 << 20  # ``kept``'s block and the newest one at most
        del kept
        gc.collect()
        pub.publish(np.zeros(1 << 20, np.uint8))  # settles the departed slot
        other.recv(timeout=5)
        pub.store.reclaim()
        assert pub.store.in_use() == 0 and pub._departed == {}


def test_a_killed_subscriber_process_gives_its_blocks_back(no_leaks: None) -> None:
    topic, reply = unique("killed"), unique("killedreply")
    child = start(peers.holding_subscriber, topic, reply)
    try:
        with Publisher(topic, store_bytes=2 << 20) as pub, Channel(reply, "a") as ch:
            assert ch.recv(timeout=20) == "ready"
            pub.wait_for_subscribers(1)
            pub.publish(np.zeros(1 << 20, np.uint8))
            assert ch.recv(timeout=20) == "holding"
            child.kill()
            child.join(20)
            unlink_segments_of(child.pid)  # the store of its reply channel: a killed process cannot
            for _ in range(4):  # needs the held block back: the store has room for two
                pub.publish(np.zeros(1 << 20, np.uint8))
            pub.store.reclaim()
            assert pub.subscribers == 0 and pub.store.in_use() == 0 and pub._departed == {}
    finally:
        child.join(20)


def test_a_subscriber_without_a_free_slot_is_told_why(no_leaks: None) -> None:
    topic = unique("full")
    with Publisher(topic, max_subscribers=1) as pub, Subscriber(topic) as first:
        first.wait_connected()
        pub.wait_for_subscribers(1)
        pub.publish(np.zeros(1 << 20, np.uint8))
        kept = first.recv(timeout=5)
        with Subscriber(topic) as second:
            second.wait_connected()
            assert pub.subscribers == 1  # looks for new subscribers now: ``second`` is refused
            with pytest.raises(TransportError, match=r"all 1 subscriber slots are taken; .*max_subscribers"):
                second.recv(timeout=5)
        first.close()  # its slot stays taken while ``kept`` lives
        pub.publish(2)  # the publisher finds it gone
        with Subscriber(topic) as third:
            third.wait_connected()
            assert pub.subscribers == 0
            with pytest.raises(TransportError, match="1 of them by closed subscribers whose received arrays"):
                third.recv(timeout=5)
        del kept
        gc.collect()
        with Subscriber(topic) as fourth:  # the slot is free again
            fourth.wait_connected()
            pub.wait_for_subscribers(1)
            pub.publish(3)
            assert fourth.recv(timeout=5) == 3


def test_inline_limit_must_fit_one_socket_frame(no_leaks: None) -> None:
    with pytest.raises(ValueError, match="inline_bytes"):
        Publisher(unique("frame"), inline_bytes=1 << 20)


def test_small_messages_arrive_aligned_and_whole_up_to_the_inline_limit(no_leaks: None) -> None:
    name = unique("inline")
    # a 3-byte array first: packed back to back, the float64 entry after it would start misaligned
    small = {"flags": np.array([1, 0, 1], np.uint8), "q": np.linspace(0, 1, 5), "m": np.eye(3, dtype=int),
             "rec": np.ones(2, dtype=[("id", "<i4"), ("x", "<f8")])}
    many = {f"k{i}": np.full(i + 1, i, np.uint8) for i in range(60)}  # 60 buffers: padding adds ~3.6 KB
    with Publisher(name, inline_bytes=8192) as pub, Subscriber(name) as sub:
        sub.wait_connected()
        pub.wait_for_subscribers(1)
        for value in (small, many, {"big": np.ones(8200, np.uint8)}):
            pub.publish(value)
            got = sub.recv(timeout=5)
            assert same(value, got)
            assert all(arr.flags.aligned for arr in got.values())
        assert pub.stats.inline == 2 and pub.stats.stored == 1


def _publish_later(pub: Publisher, value: Any, delay: float) -> threading.Thread:
    t = threading.Timer(delay, pub.publish, (value,))
    t.start()
    return t


def test_subscriber_spins_only_while_its_peer_answers_fast(no_leaks: None) -> None:
    """Spin for twice the last wait (at least ``spin``); not at all after a wait over SPIN_STRETCH spins."""
    topic = unique("spin")
    assert SPIN_STRETCH == 5
    with Publisher(topic) as pub, Subscriber(topic, spin=0.1) as sub:
        sub.wait_connected()
        pub.wait_for_subscribers(1)
        steps = [(1.0, 0),  # waits longer than the spin: spins, gives up, sleeps
                 (0.05, 0),  # would be caught spinning, but the last wait was over 0.5 s: sleeps
                 (0.05, 1),  # the last wait was short: spins, and catches it
                 (0.25, 1),  # spins 0.1 s (twice the last wait is less): gives up, sleeps
                 (0.25, 2)]  # spins twice the last wait, 0.5 s: catches it
        for i, (delay, spun) in enumerate(steps):
            t = _publish_later(pub, i, delay)
            assert sub.recv(timeout=10) == i and sub.spun == spun, f"message {i}"
            t.join()


def test_subscriber_with_spin_zero_never_spins(no_leaks: None) -> None:
    topic = unique("nospin")
    with Publisher(topic) as pub, Subscriber(topic, spin=0) as sub:
        sub.wait_connected()
        pub.wait_for_subscribers(1)
        for i in range(3):
            t = _publish_later(pub, i, 0.02)
            assert sub.recv(timeout=10) == i
            t.join()
        assert sub.spun == 0


def test_recv_with_zero_timeout_on_an_empty_topic_times_out(no_leaks: None) -> None:
    topic = unique("empty")
    with Publisher(topic) as pub, Subscriber(topic) as sub:
        sub.wait_connected()
        pub.wait_for_subscribers(1)
        pub.publish("hello")
        assert sub.recv(timeout=5) == "hello"
        with pytest.raises(TimeoutError, match=topic):
            sub.recv(timeout=0)


def test_negative_spin_is_refused() -> None:
    with pytest.raises(ValueError, match="spin"):
        Subscriber(unique("neg"), spin=-1)


def test_an_event_loop_can_watch_a_subscriber(no_leaks: None) -> None:
    import asyncio

    async def main() -> list[Any]:
        got: list[Any] = []
        done = asyncio.get_running_loop().create_future()
        with Publisher("watched") as pub, Subscriber("watched") as sub:
            def readable() -> None:
                while True:
                    try:
                        got.append(sub.recv(timeout=0))
                    except TimeoutError:
                        break
                if len(got) == 3 and not done.done():
                    done.set_result(None)
            asyncio.get_running_loop().add_reader(sub.fileno(), readable)
            pub.wait_for_subscribers(1)
            for v in (1, np.arange(100_000), "three"):
                pub.publish(v)
            await asyncio.wait_for(done, 10)
            asyncio.get_running_loop().remove_reader(sub.fileno())
        return got
    got = asyncio.run(main())
    assert got[0] == 1 and int(got[1][-1]) == 99_999 and got[2] == "three"
