"""Adaptive serialization: pick, per message, the cheapest encoding that is still correct.

Four encodings, chosen by type and size, in this order:

* ``raw``: a C-contiguous numpy array (loaned ones too) or CPU torch tensor is its own wire format. The header
  carries dtype and shape; the single buffer is the array's memory, read back as a view (zero copies on the
  read side).
* ``arrays``: a plain ``dict`` whose keys are strings and whose values are all arrays or tensors (an RL
  observation dict, a batch of named tensors) is ``raw`` per entry: one header with every key, dtype and
  shape, one buffer per entry. Pickling such a dict and unpickling it cost ~20 us each way even with the
  buffers out of band; this costs dictionary lookups.
* ``oob``: any other picklable structure that holds arrays (a dict of arrays, a tuple of tensors, ...) is
  pickled with protocol 5 and its array buffers are taken *out of band*: the pickle stream stays small and
  the buffers travel as separate, zero-copy buffers. Buffers under 2 KB stay in band: for them the
  bookkeeping of a separate buffer costs more than copying.
* ``small``: everything else (ints, strings, small dicts) is one in-band pickle; for small plain data this
  beats any buffer bookkeeping.

A non-contiguous array cannot be described by dtype + shape + one buffer; it is made contiguous first (one
copy, counted in ``Stats.copied_noncontiguous``) so that sending never fails for a layout reason. An object
pickle cannot handle raises ``SerializationError`` naming its type.

A stream of arrays usually repeats one dtype and shape, so the ``raw`` and ``arrays`` headers are cached
both ways (pickled once per layout, parsed once per distinct header): a message then costs dictionary
lookups, not pickle calls.

The choice is visible: ``Encoded.kind`` says which encoding was used, every encoder keeps a ``Stats`` count
per kind, and the ``reflow.transport`` logger prints the choice at DEBUG level.
"""

from __future__ import annotations

import logging
import pickle
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from reflow.errors import SerializationError
from reflow.transport.loan import LoanedArray

log = logging.getLogger("reflow.transport")

Kind = Literal["raw", "oob", "small", "arrays"]
KINDS: tuple[Kind, ...] = ("raw", "oob", "small", "arrays")  # the wire carries the index: append only
OOB_MIN = 2048  # bytes: smaller array buffers inside a structure stay in the pickle stream
HEADER_CACHE = 256  # distinct raw headers remembered per direction (the caches are emptied when full)
MAX_ARRAYS = 64  # entries of a dict sent as ``arrays``; larger dicts are pickled
Layout = tuple[np.dtype[Any], tuple[int, ...], bool]  # dtype, shape, was a torch tensor
_headers: dict[object, bytes] = {}  # layout key -> pickled header, for the sender
_layouts: dict[bytes, Any] = {}  # pickled header -> parsed layout(s), for the receiver


@dataclass
class Stats:
    """How many messages used each encoding, and how many arrays had to be made contiguous first."""

    kinds: Counter[str] = field(default_factory=Counter)
    copied_noncontiguous: int = 0


@dataclass(slots=True)
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


def _as_array(obj: Any) -> tuple[np.ndarray[Any, Any], bool, bool] | None:
    """The numpy array to send raw, whether it was a torch tensor, and whether it had to be made contiguous
    (a copy); None if ``obj`` is not an array."""
    if type(obj) is np.ndarray and obj.flags.c_contiguous and not obj.dtype.hasobject:  # the usual case
        return obj, False, False
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
        return np.ascontiguousarray(arr), is_torch, True
    return arr, is_torch, False


def _header(key: object, layout: Callable[[], object]) -> bytes:
    """The pickled header ``layout()`` for ``key``, pickled once per distinct key."""
    header = _headers.get(key)
    if header is None:
        if len(_headers) >= HEADER_CACHE:
            _headers.clear()
        header = _headers[key] = pickle.dumps(layout(), protocol=5)
    return header


def _bytes_of(arr: np.ndarray[Any, Any]) -> memoryview:
    """The bytes of a C-contiguous array, without a copy."""
    try:
        return memoryview(arr).cast("B")  # type: ignore[arg-type]  # fast; datetime64 & co. cannot do this
    except (TypeError, ValueError, NotImplementedError):
        return arr.reshape(-1).view(np.uint8).data


ArraysKey = tuple[tuple[str, np.dtype[Any], tuple[int, ...], bool], ...]  # name, dtype, shape, was a tensor


def _as_arrays(obj: Any) -> tuple[ArraysKey, tuple[memoryview, ...], int] | None:
    """For a flat dict of arrays: each entry's layout, its bytes, and how many entries had to be made
    contiguous; None if ``obj`` is anything else."""
    if type(obj) is not dict or not 0 < len(obj) <= MAX_ARRAYS:
        return None
    key, buffers, copies = [], [], 0
    for k, v in obj.items():
        if type(k) is not str:
            return None
        if type(v) is np.ndarray and v.flags.c_contiguous and not v.dtype.hasobject:  # as in _as_array
            arr, is_torch = v, False
        else:
            found = _as_array(v)
            if found is None:
                return None
            arr, is_torch, copied = found
            copies += copied
        key.append((k, arr.dtype, arr.shape, is_torch))
        buffers.append(_bytes_of(arr))
    return tuple(key), tuple(buffers), copies


def encode(obj: Any, stats: Stats | None = None) -> Encoded:
    """Encode ``obj`` with the cheapest correct encoding (see the module docstring)."""
    stats = stats if stats is not None else Stats()
    found = _as_array(obj)
    dict_found = None if found is not None else _as_arrays(obj)
    if found is not None:
        arr, is_torch, copied = found
        stats.copied_noncontiguous += copied
        header = _header((arr.dtype, arr.shape, is_torch),  # dtypes hash faster than their ``.str``
                         lambda: (_named(arr.dtype), arr.shape, is_torch))
        enc = Encoded("raw", header, (_bytes_of(arr),) if arr.nbytes else ())
    elif dict_found is not None:
        key, views, copies = dict_found
        stats.copied_noncontiguous += copies
        header = _header(key, lambda: tuple((k, _named(dtype), shape, t) for k, dtype, shape, t in key))
        enc = Encoded("arrays", header, views)
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


def _layout(header: bytes, parse: Callable[[Any], Any]) -> Any:
    """The layout a ``raw`` or ``arrays`` header describes, unpickled and parsed once per distinct header."""
    layout = _layouts.get(header)
    if layout is None:
        if len(_layouts) >= HEADER_CACHE:
            _layouts.clear()
        layout = _layouts[header] = parse(pickle.loads(header))
    return layout


def _named(dtype: np.dtype[Any]) -> str | np.dtype[Any]:
    """What a header carries for ``dtype``: its short string (``'<f4'``) where that names it exactly, else
    the dtype itself (a structured dtype's string, ``'|V12'``, drops its fields). Once per layout."""
    return dtype.str if np.dtype(dtype.str) == dtype else dtype


def _raw_layout(key: tuple[str | np.dtype[Any], tuple[int, ...], bool]) -> Layout:
    dtype, shape, is_torch = key
    return np.dtype(dtype), shape, is_torch


def _arrays_layout(key: tuple[tuple[str, str | np.dtype[Any], tuple[int, ...], bool], ...]
                   ) -> tuple[tuple[str, Layout], ...]:
    return tuple((name, _raw_layout((dtype, shape, is_torch))) for name, dtype, shape, is_torch in key)


def _view(data: Any, dtype: np.dtype[Any], shape: tuple[int, ...], is_torch: bool) -> Any:
    # a buffer from the store is already a byte array (a slice of the leased block): viewing it as ``dtype``
    # costs half of wrapping it anew
    arr = data.view(dtype) if type(data) is np.ndarray else np.frombuffer(data, dtype=dtype)
    if arr.shape != shape:  # not 1-D (frombuffer's shape is the whole buffer's length)
        arr = arr.reshape(shape)
    return _tensor(arr, is_torch)


def decode(kind: Kind, header: bytes, buffers: list[Any]) -> Any:
    """Rebuild a value; array data is not copied: the result views ``buffers``."""
    if kind == "raw":
        return _view(buffers[0] if buffers else b"", *_layout(header, _raw_layout))
    if kind == "arrays":
        layouts = _layout(header, _arrays_layout)
        return {name: _view(buf, *layout) for (name, layout), buf in zip(layouts, buffers, strict=True)}
    if kind == "oob":
        return pickle.loads(header, buffers=buffers)
    return pickle.loads(header)


def viewer(kind: Kind, header: bytes, offsets: tuple[int, ...],
           sizes: tuple[int, ...]) -> Callable[[np.ndarray[Any, Any]], Any]:
    """A function that rebuilds the value from the bytes its buffers lie in (a uint8 array, buffer i at
    ``offsets[i]``, ``sizes[i]`` long), viewing them. For ``raw`` and ``arrays``, built once per layout by a
    receiver, it makes one array per entry and parses no header; a pickle loads with its buffers sliced
    from the bytes."""
    if kind == "raw":
        dtype, shape, is_torch = _layout(header, _raw_layout)
        (off,) = offsets
        return lambda block: _tensor(np.ndarray(shape, dtype, block, off), is_torch)
    if kind != "arrays":
        spans = tuple(zip(offsets, sizes, strict=True))
        return lambda block: decode(kind, header, [block[off:off + size] for off, size in spans])
    entries = tuple((name, dtype, shape, off) for (name, (dtype, shape, _)), off
                    in zip(_layout(header, _arrays_layout), offsets, strict=True))
    torch = {name for name, (_, _, is_torch) in _layout(header, _arrays_layout) if is_torch}
    if torch:
        return lambda block: {name: _tensor(np.ndarray(shape, dtype, block, off), name in torch)
                              for name, dtype, shape, off in entries}
    return lambda block: {name: np.ndarray(shape, dtype, block, off) for name, dtype, shape, off in entries}


def _tensor(arr: np.ndarray[Any, Any], is_torch: bool) -> Any:
    if is_torch:
        import torch

        return torch.from_numpy(arr)
    return arr
