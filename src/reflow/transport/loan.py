"""Loans: the producer writes a message straight into the publisher's store; publishing it sends a handle.

Policy. ``Publisher.loan(shape, dtype)`` allocates a block of the publisher's store (waiting for room as
``publish`` does, then ``BackPressureError``) and returns it as a ``LoanedArray``: a numpy array whose memory
is the block itself (``like="torch"`` returns a CPU tensor viewing it). The producer fills it in place (a
camera frame, a batch of observations), and ``publish`` of that array sends only a handle frame, as for any
large message, but without the copy into the store. Receivers get views, as always.

Rules (all tested in ``tests/transport/test_transport_loan.py``):

* A loan belongs to its publisher until it is published. Publishing consumes it: the loaned array, and any
  view made of it from then on, turns read-only, and publishing it again raises ``TransportError``. Views
  made *before* publish and tensors cannot be locked this way: do not write through them after publish.
* ``with pub.loan(...) as arr:`` ends the loan with the block: an array not published by then is returned
  (read-only; publishing it raises).
* Sent without a copy is an array that is C-contiguous and *starts* where a loan starts: the loaned array,
  a reshape or dtype view of it, a prefix ``arr[:n]``, ``torch.from_numpy(arr)``. Any other view into a
  loan, and arrays inside a structure (a dict of loans), are copied like any array, and the loan stays open.
* A small message goes inline, copied into the frame (cheaper than a handle for a few KB), so a loan that
  surely goes inline (up to ``inline_bytes`` less 4 KiB for the header) is plain process memory, not a
  store block, which would cost an allocation for nothing. Same rules otherwise.
* The array ``loan`` returned, published on *another* publisher, raises ``TransportError``: its block is in
  the other store, and sending it here would copy it behind the caller's back (views of it are just arrays
  there, and are copied). After ``close()`` a loaned array is plain memory, copied wherever it is sent.
* Memory: as with a received array, a block goes back to the store once the loaned array and every view of
  it are gone and every subscriber released it, never earlier, so reading a published or returned loan is
  always safe; an unpublished loan that is dropped is reclaimed by the next allocation. Nothing leaks.

Loaned arrays live on a second mapping of the store's segment that the publisher never unmaps, so a loaned
array still alive after ``close()`` stays valid memory (unlinked from /dev/shm, freed with the array).
"""

from __future__ import annotations

import math
import sys
import weakref
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal, SupportsIndex

import numpy as np
from numpy.typing import DTypeLike

from reflow.errors import TransportError
from reflow.transport.shm import SharedSegment
from reflow.transport.store import Block, ObjectStore

Shape = int | tuple[int, ...]
Like = Literal["numpy", "torch"]


class LoanedArray(np.ndarray[Any, np.dtype[Any]]):
    """A numpy array whose memory is a block of a publisher's store (see the module docstring).

    Otherwise a plain ndarray: ``with`` ends the loan at the end of the block, and it pickles as a plain
    ndarray, so a structure holding one travels like any other and receivers never see this class. Only the
    array ``loan`` returned knows its loan (views of it are found by address): no ``__array_finalize__``,
    so making views of a loaned array costs what it costs on any array."""

    _loans: Loans | None = None
    _loan: Loan | None = None

    def __enter__(self) -> LoanedArray:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._loans is not None and self._loan is not None:
            self._loans.end(self._loan)

    def __reduce_ex__(self, protocol: SupportsIndex) -> str | tuple[Any, ...]:
        return self.view(np.ndarray).__reduce_ex__(protocol)


@dataclass
class Loan:
    """One block lent out, the array that holds it, and how far it got."""

    block: Block | None  # None for a small loan (process memory: it goes inline)
    array: weakref.ref[LoanedArray]
    state: Literal["open", "published", "returned"] = "open"


def start_address(value: Any) -> int | None:
    """Where a C-contiguous numpy array or CPU tensor starts in memory; None for anything else."""
    if type(value) is np.ndarray or type(value) is LoanedArray:
        return int(value.ctypes.data) if value.flags.c_contiguous else None
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(value, torch.Tensor) and value.device.type == "cpu" \
            and value.is_contiguous():
        return int(value.data_ptr())
    return None


class Loans:
    """The blocks one publisher has lent out, found by the address their arrays start at."""

    def __init__(self, store: ObjectStore, topic: str, inline_bytes: int) -> None:
        self.store, self.topic = store, topic
        self.small = inline_bytes - 4096  # loans up to this size surely go inline
        self.by_address: dict[int, Loan] = {}
        self._map: SharedSegment | None = None  # a second mapping of the store, for loaned arrays only
        self._base = 0  # the address of that mapping

    def lend(self, shape: Shape, dtype: Any, like: Like, timeout: float) -> Any:
        """A new loan: a LoanedArray, or a tensor viewing one for ``like="torch"``."""
        if like == "numpy":
            return self.lend_array(shape, dtype, timeout)
        if like != "torch":
            raise ValueError(f"topic {self.topic!r}: like must be 'numpy' or 'torch', got {like!r}")
        import torch

        if isinstance(dtype, torch.dtype):
            dtype = torch.empty(0, dtype=dtype).numpy().dtype
        return torch.from_numpy(self.lend_array(shape, dtype, timeout))

    def lend_array(self, shape: Shape, dtype: DTypeLike, timeout: float) -> LoanedArray:
        """A new loan as a LoanedArray."""
        dt = np.dtype(dtype)
        dims = (shape,) if isinstance(shape, int) else tuple(shape)
        if dt.hasobject:
            raise TransportError(f"topic {self.topic!r}: cannot loan an array of Python objects ({dt}); "
                                 "shared memory holds plain data only")
        if min(dims, default=0) < 0:
            raise ValueError(f"topic {self.topic!r}: a loan's shape cannot be negative, got {dims}")
        if len(self.by_address) > 16:  # forget loans whose arrays are gone (their blocks are reclaimed)
            for address in [a for a, loan in self.by_address.items() if loan.array() is None]:
                del self.by_address[address]
        nbytes = math.prod(dims) * dt.itemsize
        if nbytes <= self.small:
            arr = LoanedArray(dims, dt)
            arr._loans, arr._loan = self, Loan(None, weakref.ref(arr))
            self.by_address[int(arr.ctypes.data)] = arr._loan
            return arr
        block = self.store.alloc(nbytes, [], timeout)
        if self._map is None:
            self._map = SharedSegment.attach(self.store.name)
            self._base = int(np.frombuffer(self._map.buf, np.uint8, 1).ctypes.data)
        arr = LoanedArray(dims, dt, buffer=self._map.buf, offset=block.offset)
        ref = weakref.ref(arr)
        self.store.hold(block, ref)
        arr._loans, arr._loan = self, Loan(block, ref)
        self.by_address[self._base + block.offset] = arr._loan
        return arr

    def live(self, address: int | None) -> Loan | None:
        """The loan whose array starts at ``address`` and is still alive, if any."""
        loan = self.by_address.get(address) if address is not None else None
        return loan if loan is not None and loan.array() is not None else None

    def claim(self, value: Any) -> Loan | None:
        """The loan ``value`` starts, if it starts an open loan of this publisher (which from now on counts
        as published; send it from ``block`` without a copy); None for any other value. Raises on a misused
        loan."""
        loan = value._loan if type(value) is LoanedArray else None
        if loan is not None:  # the very array ``loan`` returned
            if value._loans is not self:
                assert value._loans is not None
                raise TransportError(f"topic {self.topic!r}: this array is loaned by topic "
                                     f"{value._loans.topic!r}; publish it there, or send a copy "
                                     "(np.array(x))")
        else:
            loan = self.live(start_address(value))
            if loan is None:
                return None
        if loan.state != "open":
            raise TransportError(
                f"topic {self.topic!r}: this loaned array was already "
                f"{'published' if loan.state == 'published' else 'returned (its with block ended)'}; "
                "loan a new block for each message")
        loan.state = "published"
        self._lock(loan)
        if isinstance(value, np.ndarray) and value.flags.writeable:
            value.flags.writeable = False
        return loan

    def end(self, loan: Loan) -> None:
        """The end of a ``with`` block: an open loan is returned unpublished."""
        if loan.state == "open":
            loan.state = "returned"
            self._lock(loan)

    @staticmethod
    def _lock(loan: Loan) -> None:
        arr = loan.array()
        if arr is not None:
            arr.flags.writeable = False

    def close(self) -> None:
        """Forget every loan; their arrays stay valid memory until they are gone (module docstring)."""
        for loan in self.by_address.values():
            arr = loan.array()
            if arr is not None:
                arr._loan = None  # from now on just memory: sent elsewhere, it is copied like any array
        self.by_address.clear()
        if self._map is not None:
            self._map.close()
            self._map = None
