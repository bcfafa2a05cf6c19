"""Where the executor keeps values between the op that makes them and the ops that read them.

A ``Store`` holds one output of one node as the memory plan says. Along a loop whose later iterations read
the value, it keeps a *ring* of the last few iterations' values (no copy: the ring holds references). Along a
loop whose value is read after the loop (a whole episode, by the learner), it keeps a *block*: one buffer over
the loop's range, allocated at the first value in that value's dtype (an env's uint8 frames stay uint8), each
value copied into its place as it comes. Copying as it comes keeps one copy of the episode: stacking the
values after the loop would hold them twice while it stacks. Values made in one go, vectorized over some
dims, are kept as they are.

A ``Reader`` cuts a store down to what one op reads at one point of the loops around it: it selects the
coordinates an index fixes, narrows the ranges shifts and slices read, gathers by index where an index is
not a shift, and returns a tensor with one leading axis per vectorized dimension of the reader (size 1 where
the value does not vary), followed by the slice axes and the value's spatial axes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch

from reflow.errors import RecurrentError
from reflow.recurrent.analysis import Region
from reflow.recurrent.dgraph import Read
from reflow.recurrent.symbolic import Lin, Slice

Env = dict[str, Any]


class Tracker:
    """Bytes held in stores, and their peak."""

    def __init__(self) -> None:
        self.now = 0
        self.peak = 0

    def add(self, delta: int) -> None:
        self.now += delta
        if self.now > self.peak:
            self.peak = self.now


class Store:
    """The kept values of one output of one node (see the module docstring)."""

    __slots__ = ("block", "bufs", "bytes", "dims", "filled", "last", "lo", "owned", "ring", "rings", "sizes",
                 "slots", "tracker")

    def __init__(self, dims: tuple[str, ...], ring: dict[str, int], block: tuple[str, ...], region: Region,
                 owned: bool, tracker: Tracker) -> None:
        self.dims = dims  # the node's domain, context order
        self.rings = tuple((d, ring[d]) for d in dims if d in ring)
        self.ring = {d for d, _ in self.rings}
        self.block = block  # dims kept whole although computed one index at a time
        self.lo = {d: region[d][0] for d in dims}
        self.sizes = tuple(region[d][1] - region[d][0] for d in block)
        self.slots: dict[tuple[int, ...], Any] = {}
        self.bufs: dict[tuple[int, ...], torch.Tensor] = {}  # ring slot -> block buffer (block dims first)
        self.filled: dict[tuple[int, ...], int] = {}  # ring slot -> values written into its block
        self.last: tuple[int, ...] | None = None
        self.owned = owned or bool(block)
        self.tracker = tracker
        self.bytes = 0

    def key(self, env: Mapping[str, Any]) -> tuple[int, ...]:
        if len(self.rings) == 1:
            d, size = self.rings[0]
            return (env[d] % size,)
        return tuple(env[d] % size for d, size in self.rings)

    def write(self, env: Mapping[str, Any], value: torch.Tensor) -> None:
        key = self.key(env) if self.rings else ()
        self.last = key
        if not self.block:
            old = self.slots.get(key)
            self.slots[key] = value
            if self.owned:
                self._account(value.nbytes - (old.nbytes if old is not None else 0))
            return
        buf = self.bufs.get(key)
        if buf is None or self.filled[key] >= math.prod(self.sizes):  # a new round of the loop: a fresh block
            if buf is not None:
                self._account(-buf.nbytes)
            buf = self.bufs[key] = torch.empty((*self.sizes, *value.shape), dtype=value.dtype)
            self.filled[key] = 0
            self._account(buf.nbytes)
        buf[tuple(env[d] - self.lo[d] for d in self.block)].copy_(value)
        self.filled[key] += 1

    def accumulate(self, env: Mapping[str, Any], value: torch.Tensor) -> None:
        """Add ``value`` to this store's value at ``env`` (an accumulator over a loop)."""
        key = self.key(env) if self.rings else ()
        old = self.slots.get(key)
        if old is None:
            self.slots[key] = value.clone()
            self._account(value.nbytes)
        else:
            old.add_(value)
        self.last = key

    def drop(self, match: Mapping[int, int]) -> None:
        """Drop the values in the ring slots whose coordinates at the positions of ``match`` are the ones it
        gives (values no one reads any more: see ``CodeGen.drop_stale`` and ``CodeGen.drop_read``)."""
        for kept in (self.slots, self.bufs):
            for key in [k for k in kept if all(k[p] == s for p, s in match.items())]:
                if self.owned:
                    self._account(-kept[key].nbytes)
                del kept[key]
                self.filled.pop(key, None)

    def _account(self, delta: int) -> None:
        self.bytes += delta
        self.tracker.add(delta)

    def clear(self) -> None:
        self.tracker.add(-self.bytes)
        self.bytes = 0
        self.slots.clear()
        self.bufs.clear()
        self.filled.clear()

    def get(self, env: Mapping[str, Any]) -> torch.Tensor:
        key = self.key(env) if self.rings else ()
        if not self.block:
            try:
                v: torch.Tensor = self.slots[key]
                return v
            except KeyError:
                raise RecurrentError("internal: a value was read before it was computed or after it was "
                                     "freed "
                                     f"(store over {self.dims} at {dict(env)})") from None
        buf = self.bufs.get(key)
        if buf is None:
            raise RecurrentError(f"internal: a block over {self.block} was read before any of its values was "
                                 f"made (store over {self.dims} at {dict(env)})")
        return self._arrange(buf)

    def empty_like_values(self) -> torch.Tensor:
        """A stack of no values (an empty window), shaped like the values kept."""
        some = next(iter(self.slots.values()), None)
        if some is None:
            raise RecurrentError("internal: an empty window of a store that holds nothing yet")
        return torch.zeros((0, *some.shape), dtype=some.dtype)

    def part(self, env: Mapping[str, Any], coords: tuple[int, ...]) -> torch.Tensor:
        """One value of a block (at block coordinates ``coords``)."""
        key = self.key(env) if self.rings else ()
        buf = self.bufs.get(key)
        if buf is None:
            raise RecurrentError(f"internal: no value at {coords} of a block over {self.block}")
        return buf[tuple(c - self.lo[d] for c, d in zip(coords, self.block, strict=True))]

    def _arrange(self, buf: torch.Tensor) -> torch.Tensor:
        """A block buffer (block dims first, then the values' axes) with each block axis moved to its place
        among the dims of the node's domain (a view)."""
        order = [d for d in self.dims if d not in self.ring]
        vec = [d for d in order if d not in self.block]
        current = list(self.block) + vec
        perm = [current.index(d) for d in order]
        if perm != list(range(len(perm))):
            return buf.permute(*perm, *range(len(perm), buf.dim()))
        return buf

    def values(self) -> dict[tuple[int, ...], torch.Tensor]:
        """Every kept value (blocks whole), keyed by ring slot."""
        keys = set(self.slots) | set(self.bufs)
        return {k: self.get(dict(zip([d for d, _ in self.rings], k, strict=True))) for k in keys}


class Reader:
    """Cuts one input down to what an op reads (see the module docstring)."""

    def __init__(self, store: Store, src_dom: tuple[str, ...], r: Read, vec: tuple[str, ...],
                 region: Region) -> None:
        self.store = store
        self.plan: list[tuple[str, str, Any]] = []
        self.ring_plan: list[tuple[str, Any]] = []
        self.ring_slice: tuple[str, Slice] | None = None  # a window read from a ring, value by value
        labels: list[Any] = []
        for d, e in zip(src_dom, r.index, strict=True):
            if d in store.ring:
                if e.vars() & set(vec) or (isinstance(e, Slice) and self.ring_slice is not None):
                    raise RecurrentError(f"internal: dimension {d} of a ring is read over a vectorized range")
                if isinstance(e, Slice):
                    self.ring_slice = (d, e)
                    labels.insert(0, ("slice", d))
                else:
                    self.ring_plan.append((d, e))
                continue
            if isinstance(e, Slice):
                self.plan.append((d, "slice", e))
                labels.append(("slice", d))
                continue
            vs = [v for v in e.vars() if v in vec]
            if not vs:
                self.plan.append((d, "fix", e))
            elif len(vs) == 1 and isinstance(e, Lin) and dict(e.coeffs)[vs[0]] == 1:
                self.plan.append((d, "shift", (e, vs[0], region[vs[0]])))
                labels.append(vs[0])
            else:
                lo, hi = region[vs[0]]
                self.plan.append((d, "gather", (e, vs[0], lo, hi)))
                labels.append(vs[0])
        present = [v for v in vec if v in labels]
        slices = [k for k, lab in enumerate(labels) if isinstance(lab, tuple)]
        order = [labels.index(v) for v in present] + slices
        self.perm = order if order != list(range(len(labels))) else None
        self.insert = [k for k, v in enumerate(vec) if v not in labels]
        # a block read at one point of its block dims (a recurrence inside the loop that fills it) takes
        # that value alone, not the block stacked so far
        fixed_block = [(d, what) for d, how, what in self.plan if d in store.block and how == "fix"]
        self.block_point = fixed_block if len(fixed_block) == len(store.block) and store.block else None
        if self.block_point is not None:
            self.plan = [p for p in self.plan if p[0] not in store.block]

    def read(self, env: Env) -> torch.Tensor:
        store = self.store
        ringenv = {d: int(e.ev(env)) for d, e in self.ring_plan} if self.ring_plan else env
        axis = 0
        if self.ring_slice is not None:
            d, sl = self.ring_slice
            a, b = int(sl.lo.ev(env)), int(sl.hi.ev(env))
            vals = [store.get({**ringenv, d: j}) for j in range(a, b)]
            x = torch.stack(vals) if vals else store.empty_like_values()
            axis = 1
        elif self.block_point is not None:
            x = store.part(ringenv, tuple(int(e.ev(env)) for _, e in self.block_point))
        else:
            x = store.get(ringenv)
        lo = store.lo
        for d, how, what in self.plan:
            if how == "fix":
                x = x.select(axis, int(what.ev(env)) - lo[d])
                continue
            if how == "shift":
                e, v, (rlo, rhi) = what
                start = int(e.ev({**env, v: rlo})) - lo[d]
                if start != 0 or rhi - rlo != x.shape[axis]:
                    x = x.narrow(axis, start, rhi - rlo)
            elif how == "slice":
                a, b = int(what.lo.ev(env)), int(what.hi.ev(env))
                x = x.narrow(axis, a - lo[d], b - a)
            else:
                e, v, rlo, rhi = what
                idx = torch.as_tensor(e.ev({**env, v: torch.arange(rlo, rhi)})) - lo[d]
                x = x.index_select(axis, idx.reshape(-1))
            axis += 1
        if self.perm is not None:
            x = x.permute(*self.perm, *range(len(self.perm), x.dim()))
        for k in self.insert:
            x = x.unsqueeze(k)
        return x


class DiskBlock(Store):
    """A block kept on disk while its loop runs (``--memory-budget``): each value is appended to a file as it
    is made, and the block is read back whole when something after the loop reads it. On a machine whose
    compute device is the CPU, disk is the tier below memory (on a GPU it would be host memory)."""

    __slots__ = ("files", "folder", "meta")

    def __init__(self, *args: Any, folder: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.folder = folder
        self.files: dict[tuple[int, ...], Any] = {}
        self.meta: dict[tuple[int, ...], tuple[list[tuple[int, ...]], tuple[int, ...], torch.dtype]] = {}

    def write(self, env: Mapping[str, Any], value: torch.Tensor) -> None:
        key = self.key(env) if self.rings else ()
        self.last = key
        f = self.files.get(key)
        if f is None:
            import os
            import tempfile

            fd, path = tempfile.mkstemp(dir=self.folder, suffix=".block")
            os.unlink(path)  # the open file lives on; nothing is left behind on any exit
            f = self.files[key] = os.fdopen(fd, "w+b")
            self.meta[key] = ([], tuple(value.shape), value.dtype)
        coords, _, _ = self.meta[key]
        coords.append(tuple(env[d] - self.lo[d] for d in self.block))
        f.write(value.contiguous().numpy().tobytes())
        if key in self.bufs:  # a copy read back earlier is stale now
            self._account(-self.bufs.pop(key).nbytes)

    def get(self, env: Mapping[str, Any]) -> torch.Tensor:
        key = self.key(env) if self.rings else ()
        buf = self.bufs.get(key)
        if buf is None:
            import numpy as np

            coords, shape, dtype = self.meta[key]
            f = self.files[key]
            f.flush()
            f.seek(0)
            flat = torch.from_numpy(np.fromfile(f, dtype=torch.empty((), dtype=dtype).numpy().dtype))
            buf = self.bufs[key] = torch.empty((*self.sizes, *shape), dtype=dtype)
            self._account(buf.nbytes)
            buf[tuple(torch.tensor(c) for c in zip(*coords, strict=True))] = flat.reshape(len(coords), *shape)
        return self._arrange(buf)

    def part(self, env: Mapping[str, Any], coords: tuple[int, ...]) -> torch.Tensor:
        at = dict(zip(self.block, coords, strict=True))
        axes = [d for d in self.dims if d not in self.ring]
        return self.get(env)[tuple(at[d] - self.lo[d] if d in at else slice(None) for d in axes)]

    def clear(self) -> None:
        super().clear()
        for f in self.files.values():
            f.close()
        self.files.clear()
        self.meta.clear()
