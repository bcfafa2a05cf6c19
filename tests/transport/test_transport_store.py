"""The object store's allocator and lock-free reference counting, checked against a model of byte ranges."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import weakref
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reflow.errors import BackPressureError, MessageTooLarge
from reflow.transport.shm import SharedSegment, leaked_segments
from reflow.transport.store import ObjectStore, StoreReader


def test_blocks_never_overlap_and_space_comes_back(no_leaks: None) -> None:
    with ObjectStore(4096, max_readers=2, max_blocks=8) as store:
        a = store.alloc(1000, [0])
        b = store.alloc(1000, [0, 1])
        assert a.offset + a.size <= b.offset or b.offset + b.size <= a.offset
        store.flags[a.id, 0] = 1
        assert store.reclaim() == 1 and store.in_use() == b.size
        store.flags[b.id, 0] = 1
        assert store.reclaim() == 0  # reader 1 still holds b
        store.drop_reader(1)
        assert store.reclaim() == 1 and store.in_use() == 0
        whole = store.alloc(store.capacity, [])  # coalescing gave the whole arena back
        assert whole.size == store.capacity


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 3000), st.booleans()), min_size=1, max_size=40))
def test_random_alloc_release_keeps_blocks_disjoint(ops: list[tuple[int, bool]]) -> None:
    with ObjectStore(16384, max_readers=1, max_blocks=16) as store:
        live = []
        for size, release_oldest in ops:
            if release_oldest and live:
                store.flags[live.pop(0).id, 0] = 1
            try:
                live.append(store.alloc(size, [0], timeout=0.0))
            except BackPressureError:
                continue
            spans = sorted((b.offset, b.offset + b.size) for b in live)
            assert all(e <= s for (_, e), (s, _) in itertools.pairwise(spans))
            assert all(store.table_bytes <= s and e <= store.table_bytes + store.capacity for s, e in spans)


def test_a_held_block_waits_for_its_holder_and_its_readers(no_leaks: None) -> None:
    class Holder:
        """Stands in for a loaned array: any object that can be weakly referenced."""

    with ObjectStore(4096, max_readers=2, max_blocks=8) as store:
        holder = Holder()
        block = store.alloc(1000, [])  # lent: no readers yet
        store.hold(block, weakref.ref(holder))
        assert store.reclaim() == 0  # its row says done, but the holder is alive
        store.share(block, [1])  # sent to reader 1
        del holder
        assert store.reclaim() == 0  # reader 1 has not released it
        store.flags[block.id, 1] = 1
        assert store.reclaim() == 1 and store.in_use() == 0


def test_a_proxy_keeps_its_foreign_view_until_its_readers_release_it(no_leaks: None) -> None:
    class View:
        """Stands in for a leased view of another store: any object that can be weakly referenced."""

    with ObjectStore(1024, max_readers=2, max_blocks=4) as store:
        view = View()
        gone = weakref.ref(view)
        proxy = store.alloc(0, [0, 1], keep=view)  # no bytes: the message lies in the other store
        del view
        assert proxy.size == 0 and store.in_use() == 0
        whole = store.alloc(store.capacity, [0])  # the proxy took none of the arena
        store.flags[proxy.id, 0] = 1
        assert store.reclaim() == 0 and gone() is not None  # reader 1 still reads it
        store.flags[proxy.id, 1] = store.flags[whole.id, 0] = 1
        assert store.reclaim() == 2 and gone() is None


def test_message_larger_than_store_is_refused_at_once(no_leaks: None) -> None:
    with ObjectStore(1024, name="topic 'big'") as store, pytest.raises(MessageTooLarge, match="topic 'big'"):
        store.alloc(5000, [0])


def test_full_store_waits_then_raises_back_pressure(no_leaks: None) -> None:
    with ObjectStore(1024, max_readers=1) as store:
        store.alloc(1024, [0])
        with pytest.raises(BackPressureError, match="not keeping up"):
            store.alloc(64, [0], timeout=0.05)


def test_reader_sees_writer_bytes_and_releases(no_leaks: None) -> None:
    with ObjectStore(4096, max_readers=4, max_blocks=8) as store:
        block = store.alloc(16, [2])
        store.view(block)[:16] = np.arange(16, dtype=np.uint8)
        reader = StoreReader(store.name, 4, 8)
        np.testing.assert_array_equal(reader.buffer(block.offset, 16), np.arange(16))
        reader.release(block.id, 2)
        reader.close()
        assert store.reclaim() == 1


def test_each_block_starts_held_by_exactly_its_readers(no_leaks: None) -> None:
    with ObjectStore(4096, max_readers=4, max_blocks=8) as store:
        a = store.alloc(64, [0, 2])
        b = store.alloc(64, [1])
        c = store.alloc(64, [0, 2])  # the same reader set again (its row is cached)
        assert store.flags[a.id].tolist() == [0, 1, 0, 1]
        assert store.flags[b.id].tolist() == [1, 0, 1, 1]
        assert store.flags[c.id].tolist() == [0, 1, 0, 1]
        store.flags[a.id, 0] = 1
        assert store.reclaim() == 0  # reader 2 still holds a
        store.flags[a.id, 2] = 1
        assert store.reclaim() == 1


def test_a_lease_releases_its_block_when_the_last_view_goes(no_leaks: None) -> None:
    with ObjectStore(4096, max_readers=2, max_blocks=8) as store:
        block = store.alloc(256, [1])
        reader = StoreReader(store.name, 2, 8)
        lease = reader.lease(block.id, 1, block.offset, 256)
        halves = [lease[:128], lease[128:]]
        del lease
        assert store.reclaim() == 0  # the halves keep the lease alive
        halves.pop()
        assert store.reclaim() == 0
        halves.pop()
        assert store.reclaim() == 1
        reader.close()


def test_a_publisher_left_open_exits_quietly_and_leaves_nothing(tmp_path: Path) -> None:
    """At exit the store's segment is unlinked even though buffers still export it, and nothing is printed
    (no 'Exception ignored in SharedMemory.__del__')."""
    code = ("import numpy as np\n"
            "from reflow.transport import publisher\n"
            "pub = publisher('left-open-topic')\n"
            "pub.publish(np.zeros(100_000))\n"
            "print('published')\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=tmp_path)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0 and out.strip() == "published"
    assert err == ""
    assert leaked_segments(proc.pid) == []


def test_a_view_outlives_its_closed_segment(no_leaks: None) -> None:
    """numpy keeps no buffer export, so closing must not unmap under a live view (that would segfault)."""
    seg = SharedSegment.create(4096)
    view = seg.ndarray((1024,), np.int32)
    view[:] = np.arange(1024)
    name = seg.name
    seg.close()
    assert not os.path.exists(f"/dev/shm/{name}")  # unlinked at once...
    assert view[1023] == 1023  # ...but still mapped while the view lives
    view[0] = 7
    del view
