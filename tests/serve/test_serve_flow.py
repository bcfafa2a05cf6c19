"""Building flows: schemas come from annotations, and every typing mistake fails at build time, naming the
operator and the column."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pytest

from reflow.errors import FlowSchemaError, TableError
from reflow.serve import Array, Flow, Row, Store, Table, Tensor


class Pred(NamedTuple):
    label: int
    conf: float


def classify(img: Array("float32", (4,))) -> Pred:  # type: ignore[valid-type]
    return Pred(int(img.argmax()), float(img.max()))


def confident(conf: float) -> bool:
    return conf > 0.5


def test_map_output_columns_come_from_the_return_annotation() -> None:
    flow = Flow("f", {"img": Array("float32", (4,)), "id": int})
    s = flow.map(classify)
    assert s.schema.names == ("label", "conf") and str(s.schema["conf"]) == "float"
    assert flow.map(classify, keep=True).schema.names == ("img", "id", "label", "conf")
    assert flow.map(classify, keep=["id"]).schema.names == ("id", "label", "conf")
    assert flow.map(classify, names=["a", "b"]).schema.names == ("a", "b")
    assert flow.map(lambda id: id * 2, output={"twice": int}).schema.names == ("twice",)

    def double(id: int) -> int:
        return 2 * id
    assert flow.map(double).schema.names == ("double",)

    def pair(id: int) -> tuple[int, str]:
        return id, str(id)
    assert flow.map(pair, names=("n", "s")).schema.names == ("n", "s")


@pytest.mark.parametrize("build, words", [
    (lambda f: f.map(lambda nope: nope, output={"x": int}), ["map 'lambda'", "'nope'", "['img', 'id']"]),
    (lambda f: f.map(confident), ["map 'confident'", "'conf'"]),
    (lambda f: f.map(classify).map(lambda label: label, output={"x": int}).filter(lambda conf: True),
     ["filter 'lambda'", "'conf'"]),
    (lambda f: f.map(lambda id: 1.0, output={"conf": float}).join(
        f.map(lambda id: id, output={"a": int}), on="conf"), ["join", "'conf'", "right side"]),
    (lambda f: f.map(lambda id: id, output={"label": str}).join(f.map(classify)),
     ["join", "'label'", "str", "int"]),
    (lambda f: f.groupby("img"), ["groupby 'img'", "'img'", "group key"]),
    (lambda f: f.agg(("mean", "nope")), ["agg", "'nope'"]),
    (lambda f: f.map(classify).agg(("sum", "label"), ("mean", "img")), ["agg", "'img'", "mean"]),
    (lambda f: f.map(classify).union(f.map(classify, keep=["id"])), ["union", "different columns"]),
    (lambda f: f.lookup(Store("s", {1: 2.0}), "nope"), ["lookup 'lookup_s'", "'nope'"]),
    (lambda f: f.map(classify, keep=["nope"]), ["map 'classify'", "keep", "'nope'"]),
    (lambda f: f.map(lambda id: 1), ["map 'lambda'", "return annotation"]),
    (lambda f: f.map(classify, latency_target_ms=5), ["latency_target_ms", "batch"]),
    (lambda f: f.join(f, how="right"), ["how='right'", "swap"]),
])
def test_schema_errors_name_the_operator_and_the_column(build: object, words: list[str]) -> None:
    flow = Flow("f", {"img": Array("float32", (4,)), "id": int})
    with pytest.raises(FlowSchemaError) as err:
        build(flow)  # type: ignore[operator]
    for w in words:
        assert w in str(err.value), (w, str(err.value))


def test_a_parameter_type_must_match_its_column() -> None:
    flow = Flow("f", {"img": Array("float32", (4,)), "id": int})

    def wrong_dtype(img: Array("float64", (4,))) -> int:  # type: ignore[valid-type]
        return 0

    def wrong_kind(id: float) -> int:
        return 0

    def wrong_shape(img: Array("float32", (5,))) -> int:  # type: ignore[valid-type]
        return 0

    for fn, col in ((wrong_dtype, "img"), (wrong_kind, "id"), (wrong_shape, "img")):
        with pytest.raises(FlowSchemaError, match=f"map '{fn.__name__}': column '{col}'"):
            flow.map(fn)

    def any_shape(img: Array("float32", (None,))) -> int:  # type: ignore[valid-type]
        return 0

    def plain(img: np.ndarray) -> int:
        return 0
    flow.map(any_shape)
    flow.map(plain)


def test_nullable_columns_after_a_left_join_need_optional_parameters() -> None:
    flow = Flow("f", {"x": int})
    left = flow.map(lambda x: x, output={"a": int}, keep=True)
    right = left.filter(lambda a: a > 0).map(lambda a: float(a), output={"b": float})
    joined = left.join(right, how="left")
    assert joined.schema["b"].nullable and not joined.schema["a"].nullable

    def strict(b: float) -> float:
        return b

    def lenient(b: float | None) -> float:
        return b or 0.0
    with pytest.raises(FlowSchemaError, match=r"'b'.*may be None.*float \| None"):
        joined.map(strict)
    joined.map(lenient)


def test_several_unread_streams_need_an_explicit_output() -> None:
    flow = Flow("f", {"x": int})
    a = flow.map(lambda x: x, output={"a": int})
    flow.map(lambda x: x, output={"b": int})
    with pytest.raises(FlowSchemaError, match="2 streams that nothing reads"):
        flow.graph()
    assert flow.output(a).graph().predecessors("output") == [a.node]


def test_operator_names_are_unique_and_deterministic() -> None:
    flow = Flow("f", {"x": int})
    s = flow.map(lambda x: x, output={"x": int}).map(lambda x: x, output={"x": int})
    s.map(lambda x: x, output={"x": int}, name="last")
    assert flow.graph().names == ["input", "lambda", "lambda_2", "last", "output"]


def test_tables_check_their_values() -> None:
    schema = {"x": int, "v": Array("float32", (2,)), "name": str | None}
    t = Table(schema, [(1, np.zeros(2, np.float32), None),
                       {"x": 2, "v": np.ones(2, np.float32), "name": "b"}])
    t.insert(x=3, v=np.ones(2, np.float32), name="c")
    assert t.keys == [0, 1, 2] and t.column("x") == [1, 2, 3] and t[2]["name"] == "c"
    with pytest.raises(TableError, match="row 0, column 'x': expected int, got str"):
        Table(schema, [("1", np.zeros(2, np.float32), None)])
    with pytest.raises(TableError, match=r"column 'v'.*shape"):
        Table(schema, [(1, np.zeros(3, np.float32), None)])
    with pytest.raises(TableError, match=r"column 'v'.*dtype float64"):
        Table(schema, [(1, np.zeros(2), None)])
    with pytest.raises(TableError, match="2 values"):
        Table(schema, [(1, None)])
    with pytest.raises(TableError, match="missing \\['name'\\]"):
        t.insert(x=1, v=np.ones(2, np.float32))
    with pytest.raises(TableError, match="None in a column of type int"):
        t.insert(None, np.ones(2, np.float32), None)
    assert Table.from_columns({"a": int}, {"a": [1, 2]}).column("a") == [1, 2]


def test_json_tables_round_trip_arrays_bytes_and_tensors() -> None:
    import torch

    from reflow.serve.table import Schema
    schema = Schema({"v": Array("float32", (2,)), "b": bytes, "t": Tensor("int64", (3,)), "f": float})
    body = {"rows": [{"v": [1, 2], "b": "aGk=", "t": [1, 2, 3], "f": 1}]}
    t = Table.from_json(schema, body)
    assert t.rows[0][0].dtype == np.float32 and t.rows[0][1] == b"hi" and t.rows[0][3] == 1.0
    assert isinstance(t.rows[0][2], torch.Tensor)
    back = Table.from_json(schema, {"rows": t.to_json()["rows"]})
    assert back.equals(t)
    cols = Table.from_json(schema, {"columns": {"v": [[1, 2]], "b": ["aGk="], "t": [[1, 2, 3]], "f": [1.5]}})
    assert cols.rows[0][3] == 1.5
    for bad, words in (({"rows": [{"v": [1, 2, 3], "b": "", "t": [1, 2, 3], "f": 1}]}, "shape"),
                       ({"rows": [{"v": [1, 2], "b": "!!", "t": [1, 2, 3], "f": 1}]}, "base64"),
                       ({"rows": [{"v": [1, 2], "b": "", "t": [1, 2, 3], "f": "x"}]}, "'f'"),
                       ({"rows": [{"v": [1, 2], "b": ""}]}, "missing"),
                       ("text", "JSON object")):
        with pytest.raises(TableError, match=words):
            Table.from_json(schema, body if bad is None else bad)


def test_a_row_parameter_gets_the_whole_row() -> None:
    flow = Flow("f", {"a": int, "b": int})

    def total(row: Row) -> int:
        return int(row["a"] + row["b"] + row.key)
    assert flow.map(total).flow.run([(1, 2), (3, 4)]).column("total") == [3, 8]


def test_a_class_is_instantiated_once_and_called() -> None:
    made = []

    class Model:
        def __init__(self) -> None:
            made.append(1)
            self.w = 3

        def __call__(self, a: int) -> int:
            return self.w * a
    flow = Flow("f", {"a": int})
    flow.map(Model, name="scale")
    assert flow.run([(1,), (2,)]).column("scale") == [3, 6]
    assert len(made) == 1
