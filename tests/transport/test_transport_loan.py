"""Loans: a block of the publisher's store, written in place and published without a copy.

Behaviour only: ownership until publish, the errors for a misused loan, memory coming back, back-pressure.
"""

from __future__ import annotations

import gc
import multiprocessing as mp
import os
import pickle
import threading
from collections.abc import Iterator
from multiprocessing import resource_tracker

import numpy as np
import pytest
import torch
import transport_peers as peers

from reflow.errors import BackPressureError, MessageTooLarge, TransportError
from reflow.transport import Channel, LoanedArray, Publisher, Subscriber

CTX = mp.get_context("spawn")
MB = 1 << 20


@pytest.fixture(autouse=True, scope="module")
def _resource_tracker() -> None:
    """Start multiprocessing's long-lived resource tracker before ``no_leaks`` takes its first census."""
    resource_tracker.ensure_running()


def unique(name: str) -> str:
    return f"{name}-{os.getpid()}-{threading.get_ident()}"


@pytest.fixture
def pair(no_leaks: None) -> Iterator[tuple[Publisher, Subscriber]]:
    """A connected publisher (4 MB store, 0.3 s timeout) and subscriber on a fresh topic, in this process."""
    topic = unique("loan")
    with Publisher(topic, store_bytes=4 * MB, timeout=0.3) as pub, Subscriber(topic) as sub:
        sub.wait_connected()
        pub.wait_for_subscribers(1)
        yield pub, sub


def in_use(pub: Publisher) -> int:
    gc.collect()
    pub.store.reclaim()
    return pub.store.in_use()


def test_a_published_loan_is_sent_without_a_copy(pair: tuple[Publisher, Subscriber]) -> None:
    pub, sub = pair
    with pub.loan((256, 256), np.float32) as frame:
        assert isinstance(frame, LoanedArray) and frame.flags.writeable
        frame[:] = np.arange(256, dtype=np.float32)
        pub.publish(frame)
    got = sub.recv(timeout=5)
    assert type(got) is np.ndarray and got.shape == (256, 256) and got.dtype == np.float32
    assert np.array_equal(got, frame)
    assert pub.stats.loaned == 1 and pub.stats.stored == 0 and pub.stats.encoding.kinds["raw"] == 1


def test_a_loan_can_be_published_only_once_and_not_written_after(pair: tuple[Publisher, Subscriber]) -> None:
    pub, sub = pair
    arr = pub.loan(100_000, np.uint8)
    early_view = arr[:10]
    arr[:] = 7
    pub.publish(arr)
    with pytest.raises(ValueError, match="read-only"):
        arr[0] = 1
    with pytest.raises(ValueError, match="read-only"):
        arr[5:][0] = 1  # views made after publish are read-only too
    with pytest.raises(TransportError, match="already published"):
        pub.publish(arr)
    with pytest.raises(TransportError, match="already published"):
        pub.publish(arr.reshape(1000, 100))  # the same block under another shape
    assert early_view.flags.writeable  # documented: a view made before publish cannot be locked
    assert int(sub.recv(timeout=5).sum()) == 7 * 100_000
    assert pub.stats.loaned == 1


def test_the_loan_block_comes_back_once_the_array_and_the_receivers_are_done(
        pair: tuple[Publisher, Subscriber]) -> None:
    pub, sub = pair
    arr = pub.loan(MB, np.uint8)
    arr[:] = 1
    pub.publish(arr)
    got = sub.recv(timeout=5)
    assert in_use(pub) > 0
    del got
    assert in_use(pub) > 0  # the publisher's array still reads the block: never reused under it
    assert int(arr.sum()) == MB
    del arr
    assert in_use(pub) == 0


def test_an_unpublished_loan_that_is_dropped_returns_its_block(pair: tuple[Publisher, Subscriber]) -> None:
    pub, _ = pair
    arr = pub.loan(MB, np.uint8)
    assert in_use(pub) >= MB
    del arr
    assert in_use(pub) == 0
    for _ in range(20):  # 20 MB of loans through a 4 MB store: each dropped one is reused
        pub.loan(MB, np.uint8)[:] = 1
    assert in_use(pub) == 0


def test_a_with_block_ends_an_unpublished_loan(pair: tuple[Publisher, Subscriber]) -> None:
    pub, sub = pair
    with pytest.raises(RuntimeError, match="camera"), pub.loan(MB, np.uint8) as arr:
        raise RuntimeError("camera unplugged")
    assert not arr.flags.writeable
    with pytest.raises(TransportError, match="returned"):
        pub.publish(arr)
    del arr
    assert in_use(pub) == 0
    pub.publish("next")
    assert sub.recv(timeout=5) == "next"  # nothing of the returned loan was sent


def test_a_loan_of_another_publisher_is_refused(pair: tuple[Publisher, Subscriber]) -> None:
    pub, sub = pair
    with Publisher(unique("other")) as other:
        theirs = other.loan(100_000, np.uint8)
        with pytest.raises(TransportError, match="loaned by topic"):
            pub.publish(theirs)
        pub.publish(np.array(theirs))  # a copy is just an array
        pub.publish(theirs.reshape(100, 1000))  # documented: a view of another's loan is copied
        assert sub.recv(timeout=5).shape == (100_000,) and sub.recv(timeout=5).shape == (100, 1000)
        assert pub.stats.stored == 2 and pub.stats.loaned == 0
        other.publish(theirs)  # its own publisher still sends it without a copy
        assert other.stats.dropped_no_subscribers == 1
        del theirs


def test_views_that_do_not_start_the_loan_are_copied_and_leave_it_open(
        pair: tuple[Publisher, Subscriber]) -> None:
    pub, sub = pair
    arr = pub.loan((500, 200), np.float64)
    arr[:] = np.arange(200)
    pub.publish(arr[1:])  # starts elsewhere: copied
    pub.publish(arr[:, ::2])  # not contiguous: copied
    pub.publish({"obs": arr})  # inside a structure: copied (pickled as a plain array)
    assert pub.stats.stored == 3 and pub.stats.loaned == 0 and arr.flags.writeable
    got = [sub.recv(timeout=5) for _ in range(3)]
    assert got[0].shape == (499, 200) and got[1].shape == (500, 100)
    assert type(got[2]["obs"]) is np.ndarray and np.array_equal(got[2]["obs"], arr)
    pub.publish(arr[:300])  # a prefix starts the loan: sent from it, which consumes the loan
    assert sub.recv(timeout=5).shape == (300, 200) and pub.stats.loaned == 1
    with pytest.raises(TransportError, match="already published"):
        pub.publish(arr)


def test_small_loans_go_inline_and_count_as_published(pair: tuple[Publisher, Subscriber]) -> None:
    pub, sub = pair
    arr = pub.loan(16, np.int32)
    assert in_use(pub) == 0  # a loan that surely goes inline is process memory, not a store block
    arr[:] = np.arange(16)
    pub.publish(arr)
    assert np.array_equal(sub.recv(timeout=5), np.arange(16))
    assert pub.stats.inline == 1 and pub.stats.loaned == 0
    with pytest.raises(TransportError, match="already published"):
        pub.publish(arr)


def test_publishing_a_loan_without_subscribers_consumes_it(no_leaks: None) -> None:
    with Publisher(unique("alone")) as pub:
        arr = pub.loan(MB, np.uint8)
        pub.publish(arr)
        assert pub.stats.dropped_no_subscribers == 1
        with pytest.raises(TransportError, match="already published"):
            pub.publish(arr)
        del arr
        assert in_use(pub) == 0


def test_torch_loans(pair: tuple[Publisher, Subscriber]) -> None:
    pub, sub = pair
    t = pub.loan((64, 1024), torch.float32, like="torch")
    assert isinstance(t, torch.Tensor) and t.dtype == torch.float32
    t.fill_(2.0)
    pub.publish(t)
    got = sub.recv(timeout=5)
    assert isinstance(got, torch.Tensor) and float(got.sum()) == 2.0 * 64 * 1024
    arr = pub.loan((64, 1024), np.float32)
    pub.publish(torch.from_numpy(arr))  # a tensor view of a numpy loan is the loan too
    assert isinstance(sub.recv(timeout=5), torch.Tensor)
    assert pub.stats.loaned == 2
    with pytest.raises(TransportError, match="already published"):
        pub.publish(t)


def test_a_loan_waits_for_room_then_raises_back_pressure(pair: tuple[Publisher, Subscriber]) -> None:
    pub, sub = pair
    held = pub.loan(3 * MB, np.uint8)
    with pytest.raises(BackPressureError, match="loaned arrays: 1 alive"):
        pub.loan(2 * MB, np.uint8)  # the first loan holds 3 of the 4 MB: times out after 0.3 s
    pub.publish(held)
    got = [sub.recv(timeout=5)]
    del held
    threading.Timer(0.1, got.clear).start()  # the subscriber drops its view a little later
    assert pub.loan(2 * MB, np.uint8, timeout=5).nbytes == 2 * MB  # waited for it
    with pytest.raises(MessageTooLarge, match="store_bytes"):
        pub.loan(5 * MB, np.uint8)


def test_bad_loans_are_refused(pair: tuple[Publisher, Subscriber]) -> None:
    pub, _ = pair
    with pytest.raises(TransportError, match="Python objects"):
        pub.loan(10, object)
    with pytest.raises(ValueError, match="negative"):
        pub.loan((3, -1), np.float32)
    with pytest.raises(ValueError, match="like"):
        pub.loan(10, np.float32, like="jax")  # type: ignore[call-overload]


def test_a_loaned_array_pickles_as_a_plain_array(no_leaks: None) -> None:
    with Publisher(unique("pickle")) as pub:
        arr = pub.loan((4, 5), np.int16)
        arr[:] = 3
        back = pickle.loads(pickle.dumps({"a": arr}, protocol=5))["a"]
        assert type(back) is np.ndarray and np.array_equal(back, arr)
        del arr


def test_loans_after_close(no_leaks: None) -> None:
    pub = Publisher(unique("closed"))
    arr = pub.loan(MB, np.uint8)
    pub.close()
    arr[:] = 5  # still valid memory: the publisher never unmaps a loaned array
    assert int(arr[-1]) == 5
    with pytest.raises(TransportError, match="after close"):
        pub.publish(arr)
    with pytest.raises(TransportError, match="after close"):
        pub.loan(10, np.uint8)
    with Publisher(unique("next")) as nxt:
        nxt.publish(arr)  # plain memory now: copied like any array (no subscriber: dropped)
        assert nxt.stats.dropped_no_subscribers == 1
    del arr


def test_channel_echo_with_loans_across_processes(no_leaks: None) -> None:
    name, sizes = unique("loanecho"), [200_000, 3 * MB, 64, 3 * MB]
    child = CTX.Process(target=peers.loan_echo, args=(name, len(sizes)))
    child.start()
    try:
        with Channel(name, "a") as ch:
            for i, n in enumerate(sizes):
                with ch.loan(n, np.uint8) as out:
                    out[:] = i
                    ch.send(out)
                back = ch.recv(timeout=20)
                assert back.shape == (n,) and int(back.min()) == int(back.max()) == i
                del back
            assert ch.recv(timeout=20) == 3  # the child sent every large echo from a loan
            assert ch.out.stats.loaned == 3 and ch.out.stats.stored == 0
    finally:
        child.join(20)
    assert child.exitcode == 0
