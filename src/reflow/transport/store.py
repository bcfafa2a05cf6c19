"""The object store: a shared-memory arena per sender, with allocation, per-reader reference counts, release.

Policy. A sender (a publisher, one end of a channel) owns one arena, a ``SharedSegment``. A large message is
copied once into a block of the arena and only a handle (block id, offset, sizes) travels on the channel;
readers map the arena once and build numpy views on the block: no copy on the read side.

Reference counting without locks. Each live block has a row in a table of release flags at the start of the
arena, one byte per reader slot. When the sender hands a block to readers ``r1..rk`` it clears their bytes
and sets every other byte; a reader sets its own byte when it no longer needs the block. Every byte has a
single writer at a time, so no lock or atomic instruction is needed: the count of a block is the number of
cleared bytes in its row, and the sender frees the block once the row is all ones. Readers release
automatically: the arrays handed to user code carry a finalizer that sets the byte when the last view goes.
The table is read and written through a plain memoryview of bytes, not numpy: a message touches it three or
four times, and a numpy call on a 32-byte row (fancy indexing above all) costs microseconds where a slice
assignment or a bytes compare costs a fraction of one. ``flags`` (numpy) stays for bulk and test access.

Loans (``loan.py``). A block can also be lent to the producer before it is sent: it is then *held* by an
object (the loaned array) and is not reclaimed while that object is alive, whatever its release row says; its
readers are set when it is sent (``share``). A held block is freed once the holder is gone and every reader
released it.

Forwarding (``forward.py``). A message this sender forwards lies partly or wholly in *other* processes'
stores. Its block keeps the leases on those (strong references to the leased views) until every reader
released it, then drops them, which releases the foreign blocks in turn; a block whose message lies wholly
elsewhere is a *proxy*, with no bytes in the arena. Every lease a process holds is listed in ``LEASES`` so a
sender can recognise one.

Allocation is first fit over a sorted free list with coalescing, done only by the owning sender, after
reclaiming released blocks (so the same warm pages are reused). When no block fits, it waits for readers:
this is the back-pressure that keeps a slow subscriber from growing memory without bound. After ``timeout``
seconds it raises ``BackPressureError``; a message larger than the whole arena raises ``MessageTooLarge``
at once.
"""

from __future__ import annotations

import bisect
import time
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, NamedTuple

import numpy as np

from reflow.errors import BackPressureError, MessageTooLarge
from reflow.transport.shm import SharedSegment

ALIGN = 64


def _align(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


class Block(NamedTuple):
    """A block of the arena: ``id`` is its row in the release table; ``offset`` is from the segment start."""

    id: int
    offset: int
    size: int


@dataclass(slots=True)
class Lease:
    """A reader's view on a block of a foreign store: where it lies, and which release flag it sets."""

    view: weakref.ref[np.ndarray[Any, Any]]
    flag: int  # index into the reader's release table
    store: str  # the name of the segment the view is on
    offset: int  # of the view, from that segment's start
    size: int
    address: int  # where the view starts in this process's memory


LEASES: dict[int, Lease] = {}  # id(leased view) -> its lease, for every live lease of this process


class ObjectStore:
    """An arena owned by one sender. ``alloc`` blocks until readers release space (see module docstring)."""

    def __init__(self, capacity: int, max_readers: int = 32, max_blocks: int = 256,
                 name: str = "store") -> None:
        if capacity <= 0:
            raise ValueError(f"object store {name!r}: capacity must be positive, got {capacity}")
        self.label = name
        self.max_readers = max_readers
        self.max_blocks = max_blocks
        self.table_bytes = _align(max_readers * max_blocks)
        self.capacity = _align(capacity)
        self.segment = SharedSegment.create(self.table_bytes + self.capacity)
        self.flags = self.segment.ndarray((max_blocks, max_readers), np.uint8)
        self.flags[:] = 1
        self._table = self.segment.buf[:max_blocks * max_readers]
        self._done = b"\1" * max_readers  # a row all of whose readers released
        self._rows: dict[tuple[int, ...], bytes] = {}  # readers -> the row a new block starts with
        self._free: list[tuple[int, int]] = [(self.table_bytes, self.capacity)]  # sorted (offset, size)
        self._live: dict[int, Block] = {}
        self._holders: dict[int, weakref.ref[Any]] = {}  # block id -> the loaned object holding it
        self._kept: dict[int, Any] = {}  # block id -> the foreign leased views it keeps alive
        self._free_ids = list(range(max_blocks - 1, -1, -1))

    @property
    def name(self) -> str:
        return self.segment.name

    def view(self, block: Block) -> np.ndarray[Any, Any]:
        """A writable byte view on a block, for the sender to fill."""
        return self.segment.ndarray((block.size,), np.uint8, block.offset)

    def in_use(self) -> int:
        """Bytes held by blocks not yet released by all their readers."""
        return sum(b.size for b in self._live.values())

    def reclaim(self) -> int:
        """Free every block all of whose readers released it; returns how many were freed."""
        return len(self._done_blocks(-1)[0])

    def _done_blocks(self, reuse_size: int) -> tuple[list[Block], Block | None]:
        """Free every block all of whose readers released it (and whose holder is gone), except one of
        exactly ``reuse_size`` bytes, which is returned to be handed out again as it is: a stream of
        messages of one layout then takes the same block every time, without touching the free list.
        Returns the blocks freed and the one kept."""
        r, table, all_done, holders = self.max_readers, self._table, self._done, self._holders
        done = [b for b in self._live.values() if table[b.id * r:(b.id + 1) * r] == all_done
                and ((h := holders.get(b.id)) is None or h() is None)]
        kept = None
        for b in done:
            if kept is None and b.size == reuse_size:
                kept = b
                holders.pop(b.id, None)
                self._kept.pop(b.id, None)  # the foreign views its last message kept go now
            else:
                self._release_block(b)
        if kept is not None:
            done.remove(kept)
        return done, kept

    def drop_reader(self, reader: int) -> None:
        """Forget a reader that went away: its pending releases are done on its behalf."""
        self.flags[:, reader] = 1

    def release(self, block_id: int, reader: int) -> None:
        """Release ``block_id`` for ``reader`` on its behalf (a handle that never reached it)."""
        self._table[block_id * self.max_readers + reader] = 1

    def holds(self, reader: int) -> bool:
        """Whether ``reader`` still holds some block (has a release pending)."""
        return 0 in self._table[reader::self.max_readers]

    def alloc(self, nbytes: int, readers: Sequence[int], timeout: float = 10.0, waiting_on: str = "",
              keep: Any = None) -> Block:
        """A block of at least ``nbytes`` bytes held for ``readers``; waits up to ``timeout`` for space.

        With ``keep`` (the leased views of foreign stores a forwarded message also lies in) the block keeps
        them referenced until every reader released it; with ``nbytes`` 0 too it is a proxy: no bytes, only
        a release row (module docstring)."""
        size = _align(nbytes) if keep is not None else _align(max(nbytes, 1))
        if size > self.capacity:
            raise MessageTooLarge(
                f"{self.label}: a {nbytes}-byte message does not fit in its {self.capacity}-byte "
                "shared-memory store; create the publisher/channel with a larger store_bytes"
            )
        deadline: float | None = None
        pause = 20e-6
        # Reclaim first: reusing a block just released, or else the lowest free offsets, keeps the arena's
        # pages warm (a fresh page costs a fault and a zeroing, which at 1 MB is more than the copy itself).
        block = self._done_blocks(size)[1] if self._live else None
        while block is None:
            block = self._try_alloc(size)
            if block is not None:
                break
            if self.reclaim():
                continue
            now = time.monotonic()
            if deadline is None:
                deadline = now + timeout
            elif now > deadline:
                loaned = sum(h() is not None for h in self._holders.values())
                raise BackPressureError(
                    f"{self.label}: store full ({self.in_use()} of {self.capacity} bytes held) for "
                    f"{timeout}s; a subscriber is not keeping up{waiting_on} (or the producer keeps "
                    f"loaned arrays: {loaned} alive); consume faster, release received and loaned arrays "
                    "sooner, or give a larger store_bytes"
                )
            time.sleep(pause)
            pause = min(pause * 2, 1e-3)
        if keep is not None:
            self._kept[block.id] = keep
        self.share(block, readers)
        return block

    def hold(self, block: Block, holder: weakref.ref[Any]) -> None:
        """Keep ``block`` allocated while the object ``holder`` refers to (a loaned array) is alive, on top
        of its readers."""
        self._holders[block.id] = holder

    def share(self, block: Block, readers: Sequence[int]) -> None:
        """Hand an allocated (loaned) block to ``readers``: each must release it before it is freed."""
        r = self.max_readers
        self._table[block.id * r:(block.id + 1) * r] = self._row(readers)

    def _row(self, readers: Sequence[int]) -> bytes:
        """The release row of a block held by ``readers`` (cached: the set of readers rarely changes)."""
        key = readers if type(readers) is tuple else tuple(readers)
        row = self._rows.get(key)
        if row is None:
            if len(self._rows) > 64:
                self._rows.clear()
            cleared = bytearray(self._done)
            for reader in readers:
                cleared[reader] = 0
            row = self._rows[key] = bytes(cleared)
        return row

    def _try_alloc(self, size: int) -> Block | None:
        if not self._free_ids:
            return None
        if size == 0:  # a proxy: a release row, no bytes
            block = Block(self._free_ids.pop(), 0, 0)
            self._live[block.id] = block
            return block
        for i, (off, free) in enumerate(self._free):
            if free >= size:
                if free == size:
                    del self._free[i]
                else:
                    self._free[i] = (off + size, free - size)
                block = Block(self._free_ids.pop(), off, size)
                self._live[block.id] = block
                return block
        return None

    def _release_block(self, block: Block) -> None:
        del self._live[block.id]
        self._holders.pop(block.id, None)
        self._kept.pop(block.id, None)  # foreign views go, and with them the leases they held
        self._free_ids.append(block.id)
        if block.size == 0:
            return
        i = bisect.bisect(self._free, (block.offset, 0))
        self._free.insert(i, (block.offset, block.size))
        # coalesce with the right neighbour, then the left one
        if i + 1 < len(self._free) and self._free[i][0] + self._free[i][1] == self._free[i + 1][0]:
            self._free[i] = (self._free[i][0], self._free[i][1] + self._free[i + 1][1])
            del self._free[i + 1]
        if i > 0 and self._free[i - 1][0] + self._free[i - 1][1] == self._free[i][0]:
            self._free[i - 1] = (self._free[i - 1][0], self._free[i - 1][1] + self._free[i][1])
            del self._free[i]

    def close(self) -> None:
        self._kept.clear()
        self._table.release()
        del self.flags
        self.segment.close()

    def __enter__(self) -> ObjectStore:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


class StoreReader:
    """A reader's mapping of another process's arena: zero-copy views on blocks, and release of them.

    ``lease`` hands out one byte view covering a whole message; every array decoded from the message is a
    slice of it (numpy keeps it as their ``base``), so when the last of them is garbage collected the view
    dies and a weak-reference callback sets this reader's byte for the block. One weak reference per
    message, however many arrays it holds. A forwarded message may lie in several stores (``lease_parts``):
    then each part has its own view, and the byte is set when the last of them goes."""

    def __init__(self, name: str, max_readers: int, max_blocks: int) -> None:
        self.segment = SharedSegment.attach(name)
        self.max_readers = max_readers
        self.flags: memoryview | None = self.segment.buf[:max_blocks * max_readers]
        # id(weak ref to a live view) -> id(view), its lease, and the views of its message still alive
        self._leases: dict[int, tuple[int, Lease, list[int]]] = {}

    def buffer(self, offset: int, size: int) -> np.ndarray[Any, Any]:
        return self.segment.ndarray((size,), np.uint8, offset)

    def lease(self, block_id: int, reader: int, offset: int, size: int,
              segment: SharedSegment | None = None) -> np.ndarray[Any, Any]:
        """A view on a block that releases it for ``reader`` once it (and every view made from it) is gone;
        on this reader's segment, or on ``segment``, where a forwarded message lies whole."""
        return self._lease(segment or self.segment, offset, size, block_id * self.max_readers + reader, [1])

    def lease_parts(self, block_id: int, reader: int,
                    parts: list[tuple[SharedSegment, int, int]]) -> list[np.ndarray[Any, Any]]:
        """Views on ``(segment, offset, size)`` parts of one message (this reader's segment, or the stores
        a forwarded message lies in); ``block_id`` is released for ``reader`` once all of them are gone."""
        flag, alive = block_id * self.max_readers + reader, [len(parts)]
        return [self._lease(seg, offset, size, flag, alive) for seg, offset, size in parts]

    def _lease(self, seg: SharedSegment, offset: int, size: int, flag: int,
               alive: list[int]) -> np.ndarray[Any, Any]:
        """One view, whose death counts down ``alive`` (its message's live views), and sets ``flag`` at 0."""
        view = seg.ndarray((size,), np.uint8, offset)
        lease = Lease(weakref.ref(view, self._expired), flag, seg.name, offset, size, seg.address + offset)
        self._leases[id(lease.view)] = (id(view), lease, alive)
        LEASES[id(view)] = lease
        return view

    def _expired(self, ref: weakref.ref[np.ndarray[Any, Any]]) -> None:
        key, lease, alive = self._leases.pop(id(ref))
        LEASES.pop(key, None)
        alive[0] -= 1
        if not alive[0] and self.flags is not None:
            self.flags[lease.flag] = 1

    def release(self, block_id: int, reader: int) -> None:
        """Mark a block done for ``reader``."""
        if self.flags is not None:
            self.flags[block_id * self.max_readers + reader] = 1

    def close(self) -> None:
        """Drop this reader's own references to the mapping. Views still leased keep it (and the release
        table) mapped, and release their blocks when they go: the sender keeps this reader's slot until
        then, so the writes land on nobody else's flags."""
        if not self._leases:
            self.flags = None
        self.segment.close()
