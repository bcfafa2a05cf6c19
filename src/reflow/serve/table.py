"""Tables: what flows between serving operators. A table is a schema and rows; every row has a key.

A request is one table. Its rows get the keys 0, 1, 2, ... and keep them through ``map``, ``filter`` and
``lookup``, so two branches of one request can be joined back on the key (Cloudflow's query id). Values are
checked against the schema when a table is made from outside (``Table(...)``, ``insert``, JSON); operators
inside a flow make tables with ``Table.make``, which trusts its caller (each operator checks what it adds).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from reflow.errors import TableError
from reflow.serve.types import ColumnType, check, from_annotation, from_json, to_json


class Schema:
    """An ordered, immutable map of column name to ``ColumnType`` (annotations are converted)."""

    __slots__ = ("_cols", "_index")

    def __init__(self, columns: Mapping[str, Any] | Iterable[tuple[str, Any]] = ()) -> None:
        items = columns.items() if isinstance(columns, Mapping) else columns
        cols: list[tuple[str, ColumnType]] = []
        for name, t in items:
            if not isinstance(name, str) or not name:
                raise TableError(f"column names are non-empty strings, got {name!r}")
            cols.append((name, from_annotation(t, f"column {name!r}")))
        self._cols = tuple(cols)
        self._index = {n: i for i, (n, _) in enumerate(cols)}
        if len(self._index) != len(cols):
            dup = sorted({n for n, _ in cols if [m for m, _ in cols].count(n) > 1})
            raise TableError(f"column names must be distinct; {dup} appear more than once")

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(n for n, _ in self._cols)

    @property
    def types(self) -> tuple[ColumnType, ...]:
        return tuple(t for _, t in self._cols)

    def items(self) -> tuple[tuple[str, ColumnType], ...]:
        return self._cols

    def index(self, name: str) -> int:
        return self._index[name]

    def __getitem__(self, name: str) -> ColumnType:
        return self._cols[self._index[name]][1]

    def __contains__(self, name: object) -> bool:
        return name in self._index

    def __len__(self) -> int:
        return len(self._cols)

    def __reduce__(self) -> tuple[Any, ...]:
        return (Schema, (self._cols,))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Schema) and self._cols == other._cols

    def __hash__(self) -> int:
        return hash(self._cols)

    def __str__(self) -> str:
        return "(" + ", ".join(f"{n}: {t}" for n, t in self._cols) + ")"

    def __repr__(self) -> str:
        return f"Schema{self}"

    def row_bytes(self) -> float:
        """A guess at one row's size in bytes."""
        return sum(t.nbytes() for _, t in self._cols)


def as_schema(schema: Schema | Mapping[str, Any] | Iterable[tuple[str, Any]]) -> Schema:
    return schema if isinstance(schema, Schema) else Schema(schema)


class Row(Mapping[str, Any]):
    """A read-only view of one row: ``row["col"]``, ``row.key``."""

    __slots__ = ("_schema", "_values", "key")

    def __init__(self, schema: Schema, values: tuple[Any, ...], key: int) -> None:
        self._schema, self._values, self.key = schema, values, key

    def __getitem__(self, name: str) -> Any:
        try:
            return self._values[self._schema.index(name)]
        except KeyError:
            raise KeyError(f"row has no column {name!r}; its columns are {list(self._schema.names)}") \
                from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._schema.names)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"Row(key={self.key}, {dict(self)})"


class Table:
    """A schema and rows. ``Table({"x": int}, [(1,), (2,)])``, or rows as dicts, or ``insert`` one by one."""

    __slots__ = ("keys", "rows", "schema")

    def __init__(self, schema: Schema | Mapping[str, Any],
                 rows: Iterable[Sequence[Any] | Mapping[str, Any]] = (), *,
                 keys: Sequence[int] | None = None) -> None:
        self.schema = as_schema(schema)
        self.rows: list[tuple[Any, ...]] = []
        self.keys: list[int] = []
        for row in rows:
            if isinstance(row, Mapping):
                self.insert(row)
            elif isinstance(row, tuple | list):
                self.insert(*row)
            else:
                raise TableError(f"row {len(self.rows)}: expected a tuple, list or dict of values, got "
                                 f"{type(row).__name__}")
        if keys is not None:
            if len(keys) != len(self.rows):
                raise TableError(f"{len(keys)} keys for {len(self.rows)} rows")
            self.keys = [int(k) for k in keys]

    @classmethod
    def make(cls, schema: Schema, rows: list[tuple[Any, ...]], keys: list[int]) -> Table:
        """A table from trusted parts (no checks): what operators use."""
        t = cls.__new__(cls)
        t.schema, t.rows, t.keys = schema, rows, keys
        return t

    @classmethod
    def from_columns(cls, schema: Schema | Mapping[str, Any], columns: Mapping[str, Sequence[Any]]) -> Table:
        """A table from one sequence per column (all the same length; an array's first axis counts)."""
        s = as_schema(schema)
        _same_columns(s, columns, "columns")
        lengths = {len(columns[n]) for n in s.names}
        if len(lengths) > 1:
            raise TableError(f"columns have different lengths: "
                             f"{ {n: len(columns[n]) for n in s.names} }")
        n = lengths.pop() if lengths else 0
        return cls(s, [tuple(columns[c][i] for c in s.names) for i in range(n)])

    @classmethod
    def from_json(cls, schema: Schema, body: Any) -> Table:
        """A table from parsed JSON: ``{"rows": [{col: value}, ...]}``, ``{"columns": {col: [values]}}``, a
        list of row objects, or one row object."""
        if isinstance(body, dict) and set(body) == {"rows"}:
            body = body["rows"]
        if isinstance(body, dict) and set(body) == {"columns"}:
            cols = body["columns"]
            if not isinstance(cols, dict):
                raise TableError('"columns" must be an object of column name -> list of values')
            _same_columns(schema, cols, "columns")
            bad = [n for n in schema.names if not isinstance(cols[n], list)]
            if bad:
                raise TableError(f"column {bad[0]!r}: expected a JSON list of values")
            lengths = {len(cols[n]) for n in schema.names}
            if len(lengths) > 1:
                raise TableError("columns have different lengths: "
                                 f"{ {n: len(cols[n]) for n in schema.names} }")
            body = [{n: cols[n][i] for n in schema.names} for i in range(lengths.pop() if lengths else 0)]
        if isinstance(body, dict):
            body = [body]
        if not isinstance(body, list):
            raise TableError(f"expected a JSON object or a list of row objects, got {type(body).__name__}")
        rows: list[tuple[Any, ...]] = []
        for i, rec in enumerate(body):
            if not isinstance(rec, dict):
                raise TableError(f"row {i}: expected an object of column -> value, got {type(rec).__name__}")
            _same_columns(schema, rec, f"row {i}")
            rows.append(tuple(from_json(t, rec[n], f"row {i}, column {n!r}") for n, t in schema.items()))
        return cls.make(schema, rows, list(range(len(rows))))

    def insert(self, *values: Any, **named: Any) -> None:
        """Append a row, given positionally (in schema order), as one sequence or dict, or by name."""
        if len(values) == 1 and not named and isinstance(values[0], Mapping):
            named, values = dict(values[0]), ()
        elif len(values) == 1 and not named and isinstance(values[0], tuple | list) and len(self.schema) != 1:
            values = tuple(values[0])
        i = len(self.rows)
        if named:
            if values:
                raise TableError("give a row's values either by position or by name, not both")
            _same_columns(self.schema, named, f"row {i}")
            values = tuple(named[n] for n in self.schema.names)
        if len(values) != len(self.schema):
            raise TableError(f"row {i} has {len(values)} values; the schema {self.schema} has "
                             f"{len(self.schema)} columns")
        self.rows.append(tuple(check(t, v, f"row {i}, column {n!r}")
                               for (n, t), v in zip(self.schema.items(), values, strict=True)))
        self.keys.append(self.keys[-1] + 1 if self.keys else 0)

    def __reduce__(self) -> tuple[Any, ...]:
        return (Table.make, (self.schema, self.rows, self.keys))

    def column(self, name: str) -> list[Any]:
        if name not in self.schema:
            raise TableError(f"table has no column {name!r}; its columns are {list(self.schema.names)}")
        i = self.schema.index(name)
        return [r[i] for r in self.rows]

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self) -> Iterator[Row]:
        return (Row(self.schema, r, k) for r, k in zip(self.rows, self.keys, strict=True))

    def __getitem__(self, i: int) -> Row:
        return Row(self.schema, self.rows[i], self.keys[i])

    def to_records(self) -> list[dict[str, Any]]:
        """The rows as dicts (values as they are)."""
        return [dict(zip(self.schema.names, r, strict=True)) for r in self.rows]

    def to_json(self) -> dict[str, Any]:
        """JSON-ready: ``{"schema": {col: type}, "rows": [{col: value}], "keys": [...]}``."""
        return {"schema": {n: str(t) for n, t in self.schema.items()},
                "rows": [{n: to_json(v) for n, v in zip(self.schema.names, r, strict=True)}
                         for r in self.rows],
                "keys": list(self.keys)}

    def equals(self, other: Table) -> bool:
        """Same schema, keys and values, bit for bit (arrays compared by dtype, shape and bytes)."""
        return (self.schema == other.schema and self.keys == other.keys and len(self.rows) == len(other.rows)
                and all(_same(a, b) for r, s in zip(self.rows, other.rows, strict=True)
                        for a, b in zip(r, s, strict=True)))

    def __repr__(self) -> str:
        head = ", ".join(repr(dict(zip(self.schema.names, r, strict=True))) for r in self.rows[:3])
        more = f", ... {len(self.rows) - 3} more" if len(self.rows) > 3 else ""
        return f"Table{self.schema} [{head}{more}]"


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return (isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and a.dtype == b.dtype
                and a.shape == b.shape and a.tobytes() == b.tobytes())
    if type(a).__module__ == "torch" or type(b).__module__ == "torch":
        return _same(a.numpy(), b.numpy()) if hasattr(a, "numpy") and hasattr(b, "numpy") else False
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (a != a and b != b)
    return type(a) is type(b) and bool(a == b)


def _same_columns(schema: Schema, given: Mapping[str, Any], where: str) -> None:
    missing = [n for n in schema.names if n not in given]
    extra = [n for n in given if n not in schema]
    if missing or extra:
        parts = ([f"missing {missing}"] if missing else []) + ([f"unknown {extra}"] if extra else [])
        raise TableError(f"{where}: columns {' and '.join(parts)}; the schema is {schema}")
