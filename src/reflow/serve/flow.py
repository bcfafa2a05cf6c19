"""Building a flow: ``Flow`` (the input stream) and ``Stream`` (each operator's output), typed as made.

Each operator call adds one node to the flow's ``reflow.graph.Graph`` (op ``"serve.<kind>"``, the operator's
spec in ``attrs["spec"]``, its output schema in ``attrs["schema"]``) and returns the stream of its output.
Everything a request could get wrong at the type level is found here, when the flow is built: a column that
does not exist, a parameter annotated ``float`` fed an ``int`` or a nullable column, a join of clashing
columns. The error names the operator and the column.

The flow's output is the stream passed to ``flow.output(...)``, or else its one stream that nothing reads.
``flow.run(table)`` runs the flow in this process with the reference interpreter (``reflow.serve.interpret``);
the server runs the optimized plan of the same graph, and its answers equal ``flow.run``'s.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

from reflow.errors import FlowSchemaError, TableError
from reflow.graph import Graph, Node, Port
from reflow.serve.functions import bind, label, outputs
from reflow.serve.ops import (
    AGGREGATES,
    REQUIRED,
    AggSpec,
    FilterSpec,
    JoinSpec,
    LookupSpec,
    MapSpec,
    Spec,
    UnionSpec,
)
from reflow.serve.store import Store
from reflow.serve.table import Schema, Table, as_schema
from reflow.serve.types import ColumnType

HASHABLE = ("int", "str", "bool", "bytes", "float")
DEFAULT_COST = {"map": 1e-4, "filter": 2e-5, "lookup": 5e-5, "agg": 2e-5, "join": 2e-5, "union": 1e-5,
                "anyof": 1e-5}


class Stream:
    """The output of one operator (or the flow's input). Its methods add operators and return their output."""

    def __init__(self, flow: Flow, node: str, schema: Schema) -> None:
        self.flow, self.node, self.schema = flow, node, schema

    # -- row-wise operators ----------------------------------------------------------------------------------
    def map(self, fn: Any, *, names: Sequence[str] | None = None, output: Mapping[str, Any] | None = None,
            keep: bool | Sequence[str] = False, batch: int = 0, max_wait_ms: float = 0.0,
            latency_target_ms: float | None = None, high_variance: bool = False, replicas: int = 2,
            cost: float | None = None, name: str | None = None) -> Stream:
        """Apply ``fn`` to each row; its return annotation (or ``output=``) names the new columns.

        ``keep``: True keeps the input columns (those ``fn`` does not return again), a list keeps those.
        ``batch``: call ``fn`` on ``batch`` rows at once (columns stacked; padded to that size, so a row's
        result never depends on its batch-mates); the server waits up to ``max_wait_ms`` to fill a batch,
        or with ``latency_target_ms`` picks the batch size that meets the target from measured latencies.
        ``high_variance``: a straggler-prone operator; competitive execution races ``replicas`` copies.
        ``cost``: its run time in seconds per call, for placement (measured when not given)."""
        where = self.flow._where("map", name or label(fn))
        call = bind(fn, self.schema, where)
        out, multi = outputs(fn, names, output, where, name)
        kept = _kept(self.schema, keep, out, where)
        if batch < 0 or max_wait_ms < 0:
            raise FlowSchemaError(f"{where}: batch and max_wait_ms must be >= 0, got {batch}, {max_wait_ms}")
        if latency_target_ms is not None and (batch < 1 or latency_target_ms <= 0):
            raise FlowSchemaError(f"{where}: latency_target_ms needs batch > 0 (the largest batch) and a "
                                  "positive target")
        if high_variance and replicas < 2:
            raise FlowSchemaError(f"{where}: a high-variance operator races replicas >= 2 copies")
        schema = Schema([(n, self.schema[n]) for n in kept] + list(out.items()))
        target = None if latency_target_ms is None else latency_target_ms / 1e3
        spec = MapSpec(self.flow._name(name or label(fn)), self.schema, call, out, multi, kept, schema,
                       batch, max_wait_ms / 1e3, target, high_variance, replicas, cost)
        return self.flow._add("map", spec, [self])

    def filter(self, fn: Any, *, name: str | None = None, cost: float | None = None) -> Stream:
        """Keep the rows for which ``fn`` returns True."""
        where = self.flow._where("filter", name or label(fn))
        call = bind(fn, self.schema, where)
        out, _ = outputs(fn, None, {"keep": bool} if _no_return(fn) else None, where)
        if len(out) != 1 or out.types[0].kind not in ("bool", "any"):
            raise FlowSchemaError(f"{where}: a filter returns bool, {label(fn)} is annotated {out}")
        return self.flow._add("filter", FilterSpec(self.flow._name(name or label(fn)), self.schema, call,
                                                   self.schema, cost), [self])

    def lookup(self, store: Store, key: str | None = None, *, const: Hashable = None,
               column: str | None = None, default: Any = REQUIRED, name: str | None = None) -> Stream:
        """Add column ``column`` (default: the store's name): the store's value for the row's ``key`` column,
        or for the constant ``const``. A missing key fails the request unless ``default`` is given."""
        where = self.flow._where("lookup", name or f"lookup_{store.name}")
        if not isinstance(store, Store):
            raise FlowSchemaError(f"{where}: expected a reflow.serve.Store, got {type(store).__name__}")
        if (key is None) == (const is None):
            raise FlowSchemaError(f"{where}: give the key column (key='col') or a constant key (const=...)")
        if key is not None:
            _need(self.schema, key, where, HASHABLE, "a key")
        col = column or store.name
        if col in self.schema:
            raise FlowSchemaError(f"{where}: column {col!r} exists already; name the looked-up column with "
                                  "column='...'")
        assert store.value_type is not None
        vt = store.value_type if default is REQUIRED else store.value_type.optional()
        schema = Schema([*self.schema.items(), (col, vt)])
        self.flow.stores[store.name] = store
        spec = LookupSpec(self.flow._name(name or f"lookup_{store.name}"), self.schema, store, key, const,
                          col, schema, default)
        return self.flow._add("lookup", spec, [self])

    # -- aggregation -----------------------------------------------------------------------------------------
    def groupby(self, column: str) -> Grouped:
        """Group rows by ``column``; follow with ``.agg(...)``."""
        _need(self.schema, column, self.flow._where("groupby", column), HASHABLE, "a group key")
        return Grouped(self, column)

    def agg(self, *single: str | tuple[str, str], name: str | None = None, **named: tuple[str, ...] | str) \
            -> Stream:
        """Aggregate the whole table into one row: ``agg("count")``, ``agg(("mean", "conf"))`` or by name
        ``agg(n="count", avg=("mean", "conf"))``. Aggregates: count, sum, min, max, mean."""
        return self._agg(None, single, named, name)

    def _agg(self, by: str | None, single: Sequence[str | tuple[str, str]], named: Mapping[str, Any],
             name: str | None) -> Stream:
        where = self.flow._where("agg", name or "agg")
        wanted: list[tuple[str, tuple[str, ...]]] = []
        for a in single:
            t = (a,) if isinstance(a, str) else tuple(a)
            wanted.append(("_".join(t), t))
        wanted += [(k, (v,) if isinstance(v, str) else tuple(v)) for k, v in named.items()]
        if not wanted:
            raise FlowSchemaError(f"{where}: name at least one aggregate, e.g. agg('count')")
        cols: list[tuple[str, ColumnType]] = [] if by is None else [(by, self.schema[by])]
        aggs: list[tuple[str, str, str | None]] = []
        for out, t in wanted:
            fn, col = t[0], (t[1] if len(t) > 1 else None)
            if fn not in AGGREGATES or len(t) > 2 or (fn != "count" and col is None):
                raise FlowSchemaError(f"{where}: {out}={t!r}: an aggregate is 'count' or (fn, column) "
                                      f"with fn in {AGGREGATES}")
            if col is not None:
                kinds = ("int", "float") if fn in ("sum", "mean") else ("int", "float", "str")
                _need(self.schema, col, where, kinds if fn != "count" else None, f"{fn}'s column")
            ct = self.schema[col] if col is not None else None
            cols.append((out, _agg_type(fn, ct, by is None)))
            aggs.append((out, fn, col))
        try:
            schema = Schema(cols)
        except TableError as e:
            raise FlowSchemaError(f"{where}: {e}") from None
        spec = AggSpec(self.flow._name(name or ("agg" if by is None else f"groupby_{by}")), self.schema, by,
                       tuple(aggs), schema)
        return self.flow._add("agg", spec, [self])

    # -- several inputs --------------------------------------------------------------------------------------
    def join(self, other: Stream, how: str = "inner", on: str | None = None, *, name: str | None = None) \
            -> Stream:
        """Join with ``other`` on the row key (``on=None``: the rows of one request that came through both
        branches) or on a column; ``how``: inner, left or outer. A column both sides have must have the same
        type there; the left side's value is kept."""
        where = self.flow._where("join", name or "join")
        self.flow._mine(other, where)
        if how not in ("inner", "left", "outer"):
            raise FlowSchemaError(f"{where}: how={how!r}; use 'inner', 'left' or 'outer' (for a right join, "
                                  "swap the sides)")
        if on is not None:
            _need(self.schema, on, where, HASHABLE, "the join column (left side)")
            _need(other.schema, on, where, HASHABLE, "the join column (right side)")
        cols: list[tuple[str, ColumnType]] = []
        for n, t in self.schema.items():
            if n in other.schema:
                rt = other.schema[n]
                if (t.kind, t.dtype, t.shape) != (rt.kind, rt.dtype, rt.shape):
                    raise FlowSchemaError(f"{where}: column {n!r} is {t} on the left and {rt} on the right; "
                                          "rename one side (map ... keep) before joining")
                nullable = t.nullable or (how == "outer" and rt.nullable)
                cols.append((n, t.optional() if nullable else t))
            else:
                cols.append((n, t.optional() if how == "outer" else t))
        cols += [(n, t.optional() if how != "inner" else t) for n, t in other.schema.items()
                 if n not in self.schema]
        spec = JoinSpec(self.flow._name(name or "join"), self.schema, other.schema, how, on, Schema(cols))
        return self.flow._add("join", spec, [self, other])

    def union(self, *others: Stream, name: str | None = None) -> Stream:
        """All rows of this stream and ``others`` (same columns), in that order."""
        return self._union("union", others, name)

    def anyof(self, *others: Stream, name: str | None = None) -> Stream:
        """The table of whichever of this stream and ``others`` answers first (same columns). The server
        races them and cancels the rest; ``flow.run`` takes the first. Use it on branches that compute the
        same thing (replicas, fallbacks), or the answer depends on timing."""
        return self._union("anyof", others, name)

    def _union(self, kind: str, others: Sequence[Stream], name: str | None) -> Stream:
        where = self.flow._where(kind, name or kind)
        if not others:
            raise FlowSchemaError(f"{where}: give at least one other stream")
        cols = dict(self.schema.items())
        for o in others:
            self.flow._mine(o, where)
            if set(o.schema.names) != set(cols):
                raise FlowSchemaError(f"{where}: inputs have different columns: {list(self.schema.names)} "
                                      f"and {list(o.schema.names)}")
            for n, t in o.schema.items():
                if (t.kind, t.dtype, t.shape) != (cols[n].kind, cols[n].dtype, cols[n].shape):
                    raise FlowSchemaError(f"{where}: column {n!r} is {cols[n]} in one input and {t} in "
                                          "another")
                if t.nullable:
                    cols[n] = cols[n].optional()
        spec = UnionSpec(self.flow._name(name or kind), tuple(s.schema for s in (self, *others)),
                         Schema(cols), first=kind == "anyof")
        return self.flow._add(kind, spec, [self, *others])

    def __repr__(self) -> str:
        return f"Stream({self.node!r}, {self.schema})"


class Grouped:
    """A stream grouped by a column; ``agg`` makes one row per group (groups in order of first appearance)."""

    def __init__(self, stream: Stream, by: str) -> None:
        self.stream, self.by = stream, by

    def agg(self, *single: str | tuple[str, str], name: str | None = None, **named: tuple[str, ...] | str) \
            -> Stream:
        return self.stream._agg(self.by, single, named, name)


class Flow(Stream):
    """A serving pipeline: ``Flow("name", {"img": Array("float32", (3, 32, 32))})`` is its input stream."""

    def __init__(self, name: str, schema: Schema | Mapping[str, Any]) -> None:
        try:
            s = as_schema(schema)
        except TableError as e:
            raise FlowSchemaError(f"flow {name!r}: input schema: {e}") from None
        self.name = name
        self.graph_ = Graph(name)
        self.graph_.add_node(Node("input", "input", (), (Port("out"),), 0.0, {"schema": s}))
        self.stores: dict[str, Store] = {}
        self._output: Stream | None = None
        self._readers: dict[str, int] = {"input": 0}
        super().__init__(self, "input", s)

    def _where(self, kind: str, name: str) -> str:
        return f"flow {self.name!r}, {kind} {name!r}"

    def _name(self, base: str) -> str:
        name, i = base, 2
        while name in self.graph_ or name in ("output",):
            name, i = f"{base}_{i}", i + 1
        return name

    def _mine(self, s: Stream, where: str) -> None:
        if not isinstance(s, Stream) or s.flow is not self:
            raise FlowSchemaError(f"{where}: {s!r} is not a stream of flow {self.name!r}")

    def _add(self, kind: str, spec: Spec, inputs: Sequence[Stream]) -> Stream:
        ports = ("in",) if len(inputs) == 1 else ("left", "right") if kind == "join" else \
            tuple(f"in{i}" for i in range(len(inputs)))
        cost = getattr(spec, "cost", None)
        if cost is None:
            cost = DEFAULT_COST[kind] * (10 if getattr(spec, "batch", 0) else 1)
        self.graph_.add_node(Node(spec.name, f"serve.{kind}", tuple(Port(p) for p in ports), (Port("out"),),
                                  cost, {"spec": spec, "schema": spec.schema}))
        for p, s in zip(ports, inputs, strict=True):
            self.graph_.connect(s.node, "out", spec.name, p, s.schema.row_bytes())
            self._readers[s.node] = self._readers.get(s.node, 0) + 1
        self._readers[spec.name] = 0
        return Stream(self, spec.name, spec.schema)

    def output(self, stream: Stream) -> Flow:
        """Make ``stream`` the flow's answer (needed only when several streams are left unread)."""
        self._mine(stream, f"flow {self.name!r}, output")
        self._output = stream
        return self

    def sink(self) -> Stream:
        """The stream the flow answers with."""
        if self._output is not None:
            return self._output
        unread = [n for n, k in self._readers.items() if k == 0]
        if len(unread) > 1:
            raise FlowSchemaError(f"flow {self.name!r} has {len(unread)} streams that nothing reads: "
                                  f"{unread}; join or union them, or say which is the answer with "
                                  "flow.output(stream)")
        node = unread[0]
        return Stream(self, node, self.graph_.node(node).attrs["schema"])

    def graph(self) -> Graph:
        """The flow as a graph: an ``input`` node, the operators, an ``output`` node reading the sink."""
        sink = self.sink()
        g = self.graph_.copy(self.name)
        g.add_node(Node("output", "output", (Port("in"),), (), 0.0, {"schema": sink.schema}))
        g.connect(sink.node, "out", "output", "in", sink.schema.row_bytes())
        from reflow.graph import dead_code_elimination

        return dead_code_elimination(g)

    def table(self, rows: Sequence[Any] = (), **columns: Sequence[Any]) -> Table:
        """An input table: ``flow.table([(x, y), ...])``, rows as dicts, or ``flow.table(x=[...])``."""
        if columns:
            return Table.from_columns(self.schema, columns)
        return Table(self.schema, rows)

    def run(self, table: Table | Sequence[Any]) -> Table:
        """Run the flow on ``table`` in this process (the reference semantics), returning the output table."""
        from reflow.serve.interpret import run_reference

        t = table if isinstance(table, Table) else self.table(table)
        if t.schema != self.schema:
            raise TableError(f"flow {self.name!r} takes tables of schema {self.schema}, got {t.schema}")
        return run_reference(self.graph(), t)


def _kept(schema: Schema, keep: bool | Sequence[str], out: Schema, where: str) -> tuple[str, ...]:
    if keep is True:
        return tuple(n for n in schema.names if n not in out)
    if keep is False:
        return ()
    names = [keep] if isinstance(keep, str) else list(keep)
    for n in names:
        if n not in schema:
            raise FlowSchemaError(f"{where}: keep={names} names column {n!r}, which the input does not have; "
                                  f"its columns are {list(schema.names)}")
        if n in out:
            raise FlowSchemaError(f"{where}: keep={names} names column {n!r}, which the function returns too")
    return tuple(names)


def _need(schema: Schema, col: str, where: str, kinds: Sequence[str] | None, what: str) -> None:
    if col not in schema:
        raise FlowSchemaError(f"{where}: {what} names column {col!r}, which the input does not have; its "
                              f"columns are {list(schema.names)}")
    if kinds is not None and schema[col].kind not in (*kinds, "any"):
        raise FlowSchemaError(f"{where}: column {col!r} is {schema[col]}; {what} must be one of "
                              f"{list(kinds)}")


def _agg_type(fn: str, col: ColumnType | None, whole: bool) -> ColumnType:
    if fn == "count":
        return ColumnType("int")
    assert col is not None
    base = ColumnType("float") if fn == "mean" else ColumnType(col.kind, col.dtype, col.shape)
    return base.optional() if fn != "sum" and (whole or col.nullable) else base


def _no_return(fn: Any) -> bool:
    import inspect

    try:
        target = fn.__call__ if inspect.isclass(fn) else fn
        return "return" not in inspect.get_annotations(target, eval_str=True)
    except Exception:
        return True

