"""Key-value stores that ``lookup`` reads from, and the cache each worker process keeps of them.

A ``Store`` holds its data in the process that built the flow (the server's). It never travels whole: a
store pickles as its name and value type, and in a worker process it comes back as a *remote* store that
fetches the values it misses from the server (through the worker's channel, ``set_fetcher``) and keeps them
in a least-recently-used cache of ``cache_bytes``. A fetch costs a transfer; a hit costs nothing. That is the
cost the locality optimization saves: the server routes a request to the worker that caches the most of its
keys (it learns each worker's cache from the keys the worker reports with every reply, ``cache_changes``).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from reflow.errors import LookupKeyError, TableError
from reflow.serve.types import ColumnType, check

CACHE_BYTES = 256 * 1024 * 1024
Fetcher = Callable[[str, Sequence[Hashable]], dict[Hashable, Any]]
_fetcher: Fetcher | None = None


def set_fetcher(fetch: Fetcher | None) -> None:
    """Install how remote stores in this process fetch missing keys (the worker runtime does this)."""
    global _fetcher
    _fetcher = fetch


def infer_type(value: Any) -> ColumnType:
    """The column type of one value (arrays: their dtype and shape)."""
    for py, kind in ((bool, "bool"), (int, "int"), (float, "float"), (str, "str"), (bytes, "bytes")):
        if isinstance(value, py):
            return ColumnType(kind)
    if isinstance(value, np.ndarray):
        return ColumnType("array", value.dtype.name, tuple(value.shape))
    if type(value).__module__ == "torch":
        return ColumnType("tensor", str(value.dtype).removeprefix("torch."), tuple(value.shape))
    raise TableError(f"a store value of type {type(value).__name__} has no column type; store numbers, text, "
                     "bytes, numpy arrays or torch tensors")


def size_of(value: Any) -> int:
    """Bytes a cached value takes (arrays: their buffer; other values: a small constant)."""
    nbytes = getattr(value, "nbytes", None)
    if isinstance(nbytes, int):
        return nbytes
    if hasattr(value, "element_size"):
        return int(value.element_size() * value.nelement())
    return len(value) if isinstance(value, str | bytes) else 16


class Store:
    """A named key-value store: ``Store("users", {"u1": vec, ...})``; every value has one column type."""

    def __init__(self, name: str, data: Mapping[Hashable, Any] | None = None,
                 value_type: ColumnType | None = None, *, cache_bytes: int = CACHE_BYTES) -> None:
        self.name, self.value_type, self.cache_bytes = name, value_type, cache_bytes
        self._data: dict[Hashable, Any] | None = {}
        for k, v in (data or {}).items():
            self.put(k, v)
        if self.value_type is None:
            raise TableError(f"store {name!r} is empty: give value_type= (e.g. Array('float32', (512,)))")

    def put(self, key: Hashable, value: Any) -> None:
        if self._data is None:
            raise TableError(f"store {self.name!r}: put in a worker process; fill the store where the flow "
                             "is built")
        if self.value_type is None:
            self.value_type = infer_type(value)
        self._data[key] = check(self.value_type, value, f"store {self.name!r}, key {key!r}")

    def __len__(self) -> int:
        return len(self._data or {})

    def get_many(self, keys: Sequence[Hashable], operator: str) -> list[Any]:
        """The values of ``keys``; LookupKeyError names the first missing key."""
        data = self._data
        assert data is not None
        try:
            return [data[k] for k in keys]
        except KeyError as e:
            raise LookupKeyError(f"store {self.name!r} has no key {e.args[0]!r} (lookup operator "
                                 f"{operator!r})") from None
        except TypeError as e:
            raise LookupKeyError(f"store {self.name!r}: key of lookup operator {operator!r}: {e}") from None

    def fetch(self, keys: Iterable[Hashable]) -> dict[Hashable, Any]:
        """What a worker asked for: the values of the keys present (the worker reports the missing ones)."""
        data = self._data or {}
        return {k: data[k] for k in keys if k in data}

    def __reduce__(self) -> tuple[Any, ...]:
        return (remote, (self.name, self.value_type, self.cache_bytes))

    def __repr__(self) -> str:
        return f"Store({self.name!r}, {len(self)} keys of {self.value_type})"


class RemoteStore(Store):
    """A store in a worker process: fetches what it misses, caches up to ``cache_bytes`` (LRU)."""

    def __init__(self, name: str, value_type: ColumnType | None, cache_bytes: int) -> None:
        self.name, self.value_type, self.cache_bytes = name, value_type, cache_bytes
        self._data = None
        self._cache: OrderedDict[Hashable, Any] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = self.misses = 0
        self.added: list[Hashable] = []
        self.evicted: list[Hashable] = []

    def __len__(self) -> int:
        return len(self._cache)

    def get_many(self, keys: Sequence[Hashable], operator: str) -> list[Any]:
        with self._lock:
            missing = list(dict.fromkeys(k for k in keys if k not in self._cache))
            self.hits += len(keys) - len(missing)
            self.misses += len(missing)
        if missing:
            if _fetcher is None:
                raise LookupKeyError(f"store {self.name!r} cannot fetch in this process (no server)")
            got = _fetcher(self.name, missing)
            for k in missing:
                if k not in got:
                    raise LookupKeyError(f"store {self.name!r} has no key {k!r} (lookup operator "
                                         f"{operator!r})")
            with self._lock:
                for k in missing:
                    self._admit(k, got[k])
        with self._lock:
            out = []
            for k in keys:
                self._cache.move_to_end(k)
                out.append(self._cache[k])
            return out

    def _admit(self, key: Hashable, value: Any) -> None:
        if isinstance(value, np.ndarray):
            value = np.array(value)  # our own copy: the fetched one views the server's shared memory
        self._cache[key] = value
        self._bytes += size_of(value)
        self.added.append(key)
        while self._bytes > self.cache_bytes and len(self._cache) > 1:
            old, v = self._cache.popitem(last=False)
            self._bytes -= size_of(v)
            self.evicted.append(old)

    def cache_changes(self) -> tuple[list[Hashable], list[Hashable]]:
        """Keys added and evicted since the last call (what the server mirrors for locality routing)."""
        with self._lock:
            out = (self.added, self.evicted)
            self.added, self.evicted = [], []
            return out

    def __reduce__(self) -> tuple[Any, ...]:
        return (remote, (self.name, self.value_type, self.cache_bytes))


_remotes: dict[str, RemoteStore] = {}


def remote(name: str, value_type: ColumnType | None, cache_bytes: int) -> RemoteStore:
    """This process's one remote store of that name (every operator that reads it shares its cache)."""
    if name not in _remotes:
        _remotes[name] = RemoteStore(name, value_type, cache_bytes)
    return _remotes[name]


def remote_stores() -> list[RemoteStore]:
    return list(_remotes.values())
