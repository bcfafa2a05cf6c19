"""Adaptive serialization: pick, per message, the cheapest encoding that is still correct.

Three encodings, chosen by type and size, in this order:

* ``raw``: a C-contiguous numpy array (loaned ones too) or CPU torch tensor is its own wire format. The header
  carries dtype and shape; the single buffer is the array's memory, read back as a view (zero copies on the
  read side).
* ``oob``: any other picklable structure that holds arrays (a dict of arrays, a tuple of tensors, ...) is
  pickled with protocol 5 and its array buffers are taken *out of band*: the pickle stream stays small and
  the buffers travel as separate, zero-copy buffers. Buffers under 2 KB stay in band: for them the
  bookkeeping of a separate buffer costs more than copying.
* ``small``: everything else (ints, strings, small dicts) is one in-band pickle; for small plain data this
  beats any buffer bookkeeping.

A non-contiguous array cannot be described by dtype + shape + one buffer; it is made contiguous first (one
copy, counted in ``Stats.copied_noncontiguous``) so that sending never fails for a layout reason. An object
pickle cannot handle raises ``SerializationError`` naming its type.

A stream of arrays usually repeats one dtype and shape, so the ``raw`` header is cached both ways (pickled
once per dtype/shape, parsed once per distinct header): a message then costs dictionary lookups, not pickle
calls.

The choice is visible: ``Encoded.kind`` says which encoding was used, every encoder keeps a ``Stats`` count
per kind, and the ``reflow.transport`` logger prints the choice at DEBUG level.
"""

from __future__ import annotations

import logging
import pickle
import sys
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from reflow.errors import SerializationError
from reflow.transport.loan import LoanedArray

log = logging.getLogger("reflow.transport")

Kind = Literal["raw", "oob", "small"]
KINDS: tuple[Kind, ...] = ("raw", "oob", "small")
OOB_MIN = 2048  # bytes: smaller array buffers inside a structure stay in the pickle stream
HEADER_CACHE = 256  # distinct raw headers remembered per direction (the caches are emptied when full)
_raw_headers: dict[tuple[str, tuple[int, ...], bool], bytes] = {}
_raw_layouts: dict[bytes, tuple[np.dtype[Any], tuple[int, ...], bool]] = {}


@dataclass
class Stats:
    """How many messages used each encoding, and how many arrays had to be made contiguous first."""

    kinds: Counter[str] = field(default_factory=Counter)
    copied_noncontiguous: int = 0


@dataclass(frozen=True)
class Encoded:
    """A message ready for the wire: a small header (bytes) and zero or more large buffers."""

    kind: Kind
    header: bytes
    buffers: tuple[memoryview, ...]

    @property
    def nbytes(self) -> int:
        return len(self.header) + sum(b.nbytes for b in self.buffers)


def _tensor_type() -> Any:
    """torch.Tensor if torch is already imported, else None: an object cannot be a tensor unless torch is
    loaded, so reflow never pays torch's import time just to check."""
    torch = sys.modules.get("torch")
    return None if torch is None else torch.Tensor


def _as_array(obj: Any, stats: Stats) -> tuple[np.ndarray[Any, Any], bool] | None:
    """The numpy array to send raw, and whether it was a torch tensor; None if ``obj`` is not an array."""
    is_torch = False
    tensor = _tensor_type()
    if tensor is not None and isinstance(obj, tensor):
        if obj.device.type != "cpu" or obj.requires_grad:
            return None
        arr = obj.numpy()
        is_torch = True
    elif type(obj) is np.ndarray or type(obj) is LoanedArray:
        arr = obj
    else:
        return None
    if arr.dtype.hasobject:
        return None
    if not arr.flags.c_contiguous:
        stats.copied_noncontiguous += 1
        arr = np.ascontiguousarray(arr)
    return arr, is_torch


def encode(obj: Any, stats: Stats | None = None) -> Encoded:
    """Encode ``obj`` with the cheapest correct encoding (see the module docstring)."""
    stats = stats if stats is not None else Stats()
    found = _as_array(obj, stats)
    if found is not None:
        arr, is_torch = found
        key = (arr.dtype.str, arr.shape, is_torch)
        header = _raw_headers.get(key)
        if header is None:
            if len(_raw_headers) >= HEADER_CACHE:
                _raw_headers.clear()
            header = _raw_headers[key] = pickle.dumps(key, protocol=5)
        enc = Encoded("raw", header, (arr.reshape(-1).view(np.uint8).data,) if arr.nbytes else ())
    else:
        buffers: list[pickle.PickleBuffer] = []

        def out_of_band(buf: pickle.PickleBuffer) -> bool:
            """Keep small buffers in band (return True): under OOB_MIN, bookkeeping costs more than a copy."""
            if buf.raw().nbytes < OOB_MIN:
                return True
            buffers.append(buf)
            return False

        try:
            header = pickle.dumps(obj, protocol=5, buffer_callback=out_of_band)
        except Exception as exc:
            raise SerializationError(
                f"cannot send a {type(obj).__module__}.{type(obj).__qualname__}: pickle failed ({exc}); "
                "send plain data, numpy arrays or tensors, or make the type picklable"
            ) from exc
        views = tuple(b.raw() for b in buffers)
        enc = Encoded("oob" if views else "small", header, views)
    stats.kinds[enc.kind] += 1
    if log.isEnabledFor(logging.DEBUG):
        log.debug("encoded %s as %s (%d bytes, %d buffers)", type(obj).__name__, enc.kind, enc.nbytes,
                  len(enc.buffers))
    return enc


def decode(kind: Kind, header: bytes, buffers: list[Any]) -> Any:
    """Rebuild a value; array data is not copied: the result views ``buffers``."""
    if kind == "raw":
        layout = _raw_layouts.get(header)
        if layout is None:
            if len(_raw_layouts) >= HEADER_CACHE:
                _raw_layouts.clear()
            dtype, shape, is_torch = pickle.loads(header)
            layout = _raw_layouts[header] = (np.dtype(dtype), shape, is_torch)
        dt, shape, is_torch = layout
        data = buffers[0] if buffers else b""
        arr = np.frombuffer(data, dtype=dt).reshape(shape)
        if is_torch:
            import torch

            return torch.from_numpy(arr)
        return arr
    if kind == "oob":
        return pickle.loads(header, buffers=buffers)
    return pickle.loads(header)
