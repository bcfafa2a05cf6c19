"""The serving operators: one spec per kind and one table of rules that run them.

Every operator is a function of one request's tables to one table. ``RULES`` (keyed by the graph op kind,
``"serve.map"`` ...) says how to run each over *several* requests at once, which is how the executor batches:
``run_many(spec, [inputs of request 1, inputs of request 2, ...])`` returns one table per request. Row-wise
operators (``map``, ``filter``, ``lookup``) merge the rows of all requests, run once and split the result
back by request, so a batched model sees one batch; the others run request by request. Running one request
is ``run_many`` with one item, which is what the reference interpreter (``flow.run``) does.

Determinism under batching. A model's output for a row can change in the last bits with the batch size it
runs in (torch picks kernels by shape). A batched ``map`` is therefore always called with exactly ``batch``
rows: a short batch is padded with copies of its last row, whose results are dropped. The row's output then
depends neither on how many requests shared its batch nor on which; a test checks it bit for bit.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from reflow.errors import LookupKeyError, OperatorFailed, TableError
from reflow.serve.functions import ROW, Binding, label
from reflow.serve.store import Store
from reflow.serve.table import Row, Schema, Table
from reflow.serve.types import ColumnType, check

AGGREGATES = ("count", "sum", "min", "max", "mean")
class _Required:
    """The default of a lookup without one: a missing key is an error. One object, also after pickling."""

    def __repr__(self) -> str:
        return "REQUIRED"

    def __reduce__(self) -> str:
        return "REQUIRED"


REQUIRED: Any = _Required()


@dataclass(frozen=True)
class MapSpec:
    """``fn`` applied to every row. ``batch`` > 0: called on ``batch`` rows at once (padded)."""

    name: str
    inp: Schema
    call: Binding
    out: Schema
    multi: bool
    keep: tuple[str, ...]
    schema: Schema
    batch: int = 0
    max_wait: float = 0.0
    target: float | None = None
    high_variance: bool = False
    replicas: int = 1
    cost: float | None = None


@dataclass(frozen=True)
class FilterSpec:
    name: str
    inp: Schema
    call: Binding
    schema: Schema
    cost: float | None = None


@dataclass(frozen=True)
class LookupSpec:
    """Adds column ``column``: the value of the row's key (column ``key``, or the constant ``const``)."""

    name: str
    inp: Schema
    store: Store
    key: str | None
    const: Hashable
    column: str
    schema: Schema
    default: Any = REQUIRED


@dataclass(frozen=True)
class AggSpec:
    """Groups rows by column ``by`` (``None``: the whole table is one group) and aggregates each group."""

    name: str
    inp: Schema
    by: str | None
    aggs: tuple[tuple[str, str, str | None], ...]  # (output column, aggregate, input column)
    schema: Schema


@dataclass(frozen=True)
class JoinSpec:
    """Joins two tables on the row key (``on=None``) or on a column; ``how``: inner, left or outer."""

    name: str
    left: Schema
    right: Schema
    how: str
    on: str | None
    schema: Schema


@dataclass(frozen=True)
class UnionSpec:
    """All rows of all inputs, in input order (``anyof``: the first input to answer)."""

    name: str
    inputs: tuple[Schema, ...]
    schema: Schema
    first: bool = False


Spec = MapSpec | FilterSpec | LookupSpec | AggSpec | JoinSpec | UnionSpec
Items = Sequence[Sequence[Table]]


@dataclass(frozen=True)
class Rule:
    """How one kind of operator runs over several requests; ``rowwise``: empty input gives empty output."""

    run_many: Callable[[Any, Items, int | None], list[Table]]
    rowwise: bool
    inputs: int = 1  # 0: any number


# -- row-wise operators: merge the requests' rows, run once, split back --------------------------------------
def _merge(items: Items) -> tuple[list[tuple[Any, ...]], list[int], list[int]]:
    rows: list[tuple[Any, ...]] = []
    keys: list[int] = []
    counts: list[int] = []
    for ins in items:
        rows.extend(ins[0].rows)
        keys.extend(ins[0].keys)
        counts.append(len(ins[0].rows))
    return rows, keys, counts


def _split(schema: Schema, rows: list[tuple[Any, ...]], keys: list[int], counts: list[int]) -> list[Table]:
    out, at = [], 0
    for n in counts:
        out.append(Table.make(schema, rows[at:at + n], keys[at:at + n]))
        at += n
    return out


def _stack(values: list[Any], t: ColumnType) -> Any:
    if t.kind == "array" and values and all(isinstance(v, np.ndarray) for v in values):
        return np.stack(values)
    if t.kind == "tensor" and values:
        import torch

        return torch.stack(values)
    return values


def _outputs_of_row(spec: MapSpec, result: Any) -> tuple[Any, ...]:
    vals = tuple(result) if spec.multi else (result,)
    if len(vals) != len(spec.out):
        raise TableError(f"operator {spec.name!r} returned {len(vals)} values; it declares {len(spec.out)} "
                         f"columns {list(spec.out.names)}")
    return tuple(check(t, v, f"operator {spec.name!r}, output column {n!r}")
                 for (n, t), v in zip(spec.out.items(), vals, strict=True))


def _batch_results(spec: MapSpec, result: Any, size: int, used: int) -> list[tuple[Any, ...]]:
    cols = tuple(result) if spec.multi else (result,)
    if len(cols) != len(spec.out):
        raise TableError(f"operator {spec.name!r} returned {len(cols)} columns for a batch; it declares "
                         f"{len(spec.out)}: {list(spec.out.names)}")
    for n, c in zip(spec.out.names, cols, strict=True):
        if len(c) != size:
            raise TableError(f"operator {spec.name!r} returned {len(c)} values of column {n!r} for a batch "
                             f"of {size} rows")
    return [tuple(check(t, c[i], f"operator {spec.name!r}, output column {n!r}")
                  for (n, t), c in zip(spec.out.items(), cols, strict=True)) for i in range(used)]


def map_rows(spec: MapSpec, rows: list[tuple[Any, ...]], keys: list[int], pad: int | None = None) \
        -> list[tuple[Any, ...]]:
    """The output rows of ``spec`` for ``rows``, one call per row or per (padded) batch."""
    b = spec.call
    keep = [spec.inp.index(c) for c in spec.keep]
    if not spec.batch:
        out = [_outputs_of_row(spec, b.fn(*_args(b, spec.inp, r, k)))
               for r, k in zip(rows, keys, strict=True)]
    else:
        size = pad or spec.batch
        out = []
        for at in range(0, len(rows), size):
            chunk, ks = rows[at:at + size], keys[at:at + size]
            used = len(chunk)
            chunk = chunk + [chunk[-1]] * (size - used)
            ks = ks + [ks[-1]] * (size - used)
            args = []
            for p, t in zip(b.params, b.types, strict=True):
                if p == ROW:
                    args.append([Row(spec.inp, r, k) for r, k in zip(chunk, ks, strict=True)])
                else:
                    i = spec.inp.index(p)
                    args.append(_stack([r[i] for r in chunk], t))
            out.extend(_batch_results(spec, b.fn(*args), size, used))
    return [tuple(r[i] for i in keep) + o for r, o in zip(rows, out, strict=True)]


def _args(b: Binding, schema: Schema, values: tuple[Any, ...], key: int) -> list[Any]:
    return [Row(schema, values, key) if p == ROW else values[schema.index(p)] for p in b.params]


def _map_many(spec: MapSpec, items: Items, pad: int | None) -> list[Table]:
    rows, keys, counts = _merge(items)
    return _split(spec.schema, map_rows(spec, rows, keys, pad), keys, counts)


def _filter_many(spec: FilterSpec, items: Items, pad: int | None) -> list[Table]:
    out = []
    for ins in items:
        t = ins[0]
        kept = [(r, k) for r, k in zip(t.rows, t.keys, strict=True) if _truth(spec, spec.call.fn(
            *_args(spec.call, spec.inp, r, k)))]
        out.append(Table.make(spec.schema, [r for r, _ in kept], [k for _, k in kept]))
    return out


def _truth(spec: FilterSpec, v: Any) -> bool:
    if isinstance(v, bool | np.bool_):
        return bool(v)
    raise TableError(f"filter {spec.name!r} returned {type(v).__name__}, not bool")


def _lookup_many(spec: LookupSpec, items: Items, pad: int | None) -> list[Table]:
    rows, keys, counts = _merge(items)
    if spec.key is None:
        wanted: list[Hashable] = [spec.const] * len(rows)
    else:
        i = spec.inp.index(spec.key)
        wanted = [r[i] for r in rows]
    unique = list(dict.fromkeys(wanted))
    if spec.default is REQUIRED:
        values = dict(zip(unique, spec.store.get_many(unique, spec.name), strict=True))
    else:
        values = {}
        for k in unique:
            try:
                values[k] = spec.store.get_many([k], spec.name)[0]
            except LookupKeyError:
                values[k] = spec.default
    return _split(spec.schema, [(*r, values[k]) for r, k in zip(rows, wanted, strict=True)], keys, counts)


# -- request-wise operators ----------------------------------------------------------------------------------
def aggregate(fn: str, values: list[Any]) -> Any:
    vals = [v for v in values if v is not None]
    if fn == "count":
        return len(values)
    if fn == "sum":
        return sum(vals)
    if not vals:
        return None
    if fn == "min":
        return min(vals)
    if fn == "max":
        return max(vals)
    return math.fsum(vals) / len(vals)


def _agg_one(spec: AggSpec, t: Table) -> Table:
    groups: dict[Any, list[tuple[Any, ...]]] = {}
    if spec.by is None:
        groups[None] = t.rows
    else:
        i = spec.inp.index(spec.by)
        for r in t.rows:
            groups.setdefault(r[i], []).append(r)
    rows = []
    for g, members in groups.items():
        vals = [aggregate(fn, [r[spec.inp.index(c)] for r in members] if c else [1] * len(members))
                for _, fn, c in spec.aggs]
        rows.append(((g,) if spec.by is not None else ()) + tuple(vals))
    return Table.make(spec.schema, rows, list(range(len(rows))))


def _join_one(spec: JoinSpec, left: Table, right: Table) -> Table:
    lon = None if spec.on is None else spec.left.index(spec.on)
    ron = None if spec.on is None else spec.right.index(spec.on)
    extra = [i for i, n in enumerate(spec.right.names) if n not in spec.left]
    shared = {spec.left.index(n): spec.right.index(n) for n in spec.right.names if n in spec.left}
    index: dict[Any, list[int]] = {}
    for j, (r, k) in enumerate(zip(right.rows, right.keys, strict=True)):
        index.setdefault(k if ron is None else r[ron], []).append(j)
    used: set[int] = set()
    rows: list[tuple[Any, ...]] = []
    keys: list[int] = []
    for r, k in zip(left.rows, left.keys, strict=True):
        matches = index.get(k if lon is None else r[lon], [])
        for j in matches:
            used.add(j)
            rows.append(r + tuple(right.rows[j][i] for i in extra))
            keys.append(k)
        if not matches and spec.how in ("left", "outer"):
            rows.append(r + (None,) * len(extra))
            keys.append(k)
    if spec.how == "outer":
        for j, (r, k) in enumerate(zip(right.rows, right.keys, strict=True)):
            if j not in used:
                rows.append(tuple(r[shared[i]] if i in shared else None for i in range(len(spec.left)))
                            + tuple(r[i] for i in extra))
                keys.append(k)
    return Table.make(spec.schema, rows, keys)


def _union_one(spec: UnionSpec, tables: Sequence[Table]) -> Table:
    if spec.first:
        return _reorder(spec, spec.inputs[0], tables[0])
    rows: list[tuple[Any, ...]] = []
    keys: list[int] = []
    for s, t in zip(spec.inputs, tables, strict=True):
        r = _reorder(spec, s, t)
        rows.extend(r.rows)
        keys.extend(r.keys)
    return Table.make(spec.schema, rows, keys)


def pick(spec: UnionSpec, i: int, table: Table) -> Table:
    """What an ``anyof`` answers when its input ``i`` answers first: that table, in the anyof's columns."""
    return _reorder(spec, spec.inputs[i], table)


def _reorder(spec: UnionSpec, s: Schema, t: Table) -> Table:
    if s.names == spec.schema.names:
        return Table.make(spec.schema, t.rows, t.keys)
    order = [s.index(n) for n in spec.schema.names]
    return Table.make(spec.schema, [tuple(r[i] for i in order) for r in t.rows], t.keys)


def _each(one: Callable[..., Table]) -> Callable[[Any, Items, int | None], list[Table]]:
    def run_many(spec: Any, items: Items, pad: int | None) -> list[Table]:
        return [one(spec, *ins) for ins in items]
    return run_many


def _union_many(spec: UnionSpec, items: Items, pad: int | None) -> list[Table]:
    return [_union_one(spec, ins) for ins in items]


RULES: dict[str, Rule] = {
    "serve.map": Rule(_map_many, rowwise=True),
    "serve.filter": Rule(_filter_many, rowwise=True),
    "serve.lookup": Rule(_lookup_many, rowwise=True),
    "serve.agg": Rule(_each(_agg_one), rowwise=False),
    "serve.join": Rule(_each(_join_one), rowwise=False, inputs=2),
    "serve.union": Rule(_union_many, rowwise=False, inputs=0),
    "serve.anyof": Rule(_union_many, rowwise=False, inputs=0),
}


def run_op(op: str, spec: Spec, items: Items, pad: int | None = None) -> list[Table]:
    """Run operator ``spec`` (of graph op kind ``op``) over several requests' inputs.

    An exception from user code comes out as OperatorFailed naming the operator (its cause chained)."""
    try:
        return RULES[op].run_many(spec, items, pad)
    except (OperatorFailed, LookupKeyError):
        raise
    except Exception as e:
        raise OperatorFailed(f"operator {spec.name!r} ({op.removeprefix('serve.')}) raised "
                             f"{type(e).__name__}: {e}", spec.name) from e


def empty(schema: Schema) -> Table:
    return Table.make(schema, [], [])


def describe(spec: Spec) -> str:
    """One line for plans and --explain."""
    if isinstance(spec, MapSpec):
        extra = f", batch={spec.batch}" if spec.batch else ""
        extra += ", high_variance" if spec.high_variance else ""
        return f"map {label(spec.call.fn.fn)}({', '.join(spec.call.params)}) -> {spec.out}{extra}"
    if isinstance(spec, FilterSpec):
        return f"filter {label(spec.call.fn.fn)}({', '.join(spec.call.params)})"
    if isinstance(spec, LookupSpec):
        key = spec.key if spec.key is not None else repr(spec.const)
        return f"lookup {spec.store.name}[{key}] -> {spec.column}"
    if isinstance(spec, AggSpec):
        aggs = ", ".join(f"{o}={f}({c or ''})" for o, f, c in spec.aggs)
        return f"groupby {spec.by} agg {aggs}" if spec.by else f"agg {aggs}"
    if isinstance(spec, JoinSpec):
        return f"join {spec.how} on {spec.on or 'key'}"
    return f"{'anyof' if spec.first else 'union'} of {len(spec.inputs)}"
