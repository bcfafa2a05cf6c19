"""Operator semantics, each against an independent oracle (nested loops, numpy), and the stage runner against
the reference interpreter: running many requests at once (batched) gives each the answer it gets alone."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reflow.errors import LookupKeyError, OperatorFailed
from reflow.graph import fuse_chains
from reflow.serve import Array, Flow, Store, Table
from reflow.serve.interpret import run_reference, run_stage
from reflow.serve.ops import map_rows

rows = st.lists(st.tuples(st.integers(0, 4), st.integers(-5, 5)), max_size=7)


def _table(schema: dict[str, Any], data: list[tuple[int, int]], keys: list[int] | None = None) -> Table:
    return Table(schema, data, keys=keys)


def _nested_loop_join(left: Table, right: Table, how: str, on: str | None) -> list[tuple[Any, ...]]:
    """Cloudflow's algorithm: for each left row, every right row that matches; then the unmatched."""
    out, matched = [], set()
    extra = [n for n in right.schema.names if n not in left.schema]
    for lrow in left:
        hit = False
        for j, rrow in enumerate(right):
            if (lrow.key == rrow.key) if on is None else (lrow[on] == rrow[on]):
                out.append((lrow.key, *lrow.values(), *(rrow[n] for n in extra)))
                matched.add(j)
                hit = True
        if not hit and how != "inner":
            out.append((lrow.key, *lrow.values(), *([None] * len(extra))))
    if how == "outer":
        for j, rrow in enumerate(right):
            if j not in matched:
                out.append((rrow.key, *(rrow[n] if n in right.schema else None for n in left.schema.names),
                            *(rrow[n] for n in extra)))
    return out


@settings(max_examples=60, deadline=None)
@given(rows, rows, st.sampled_from(["inner", "left", "outer"]), st.sampled_from([None, "k"]),
       st.lists(st.integers(0, 3), max_size=7))
def test_join_matches_nested_loops(a: list[tuple[int, int]], b: list[tuple[int, int]], how: str,
                                   on: str | None, rkeys: list[int]) -> None:
    flow = Flow("j", {"k": int, "x": int})
    right = flow.map(lambda k, x: (k, x * 10), output={"k": int, "y": int})
    flow.join(right, how=how, on=on)
    g = flow.graph()
    left_t = _table({"k": int, "x": int}, a)
    right_t = _table({"k": int, "y": int}, b, keys=(rkeys + list(range(len(b))))[:len(b)])
    from reflow.serve.interpret import IMPLS
    node = g.node("join")
    got = IMPLS["serve.join"](node, left_t, right_t)
    want = _nested_loop_join(left_t, right_t, how, on)
    assert [(k, *r) for k, r in zip(got.keys, got.rows, strict=True)] == want


@settings(max_examples=60, deadline=None)
@given(rows)
def test_groupby_agg_matches_numpy(data: list[tuple[int, int]]) -> None:
    flow = Flow("g", {"k": int, "x": int})
    flow.groupby("k").agg("count", s=("sum", "x"), lo=("min", "x"), hi=("max", "x"), m=("mean", "x"))
    got = flow.run(data)
    ks = np.array([k for k, _ in data], dtype=np.int64)
    xs = np.array([x for _, x in data], dtype=np.int64)
    order = list(dict.fromkeys(k for k, _ in data))
    want = [(k, int((ks == k).sum()), int(xs[ks == k].sum()), int(xs[ks == k].min()), int(xs[ks == k].max()),
             float(xs[ks == k].mean())) for k in order]
    assert [r[:5] for r in got.rows] == [w[:5] for w in want]
    assert all(abs(r[5] - w[5]) < 1e-12 for r, w in zip(got.rows, want, strict=True))
    whole = Flow("w", {"k": int, "x": int})
    whole.agg("count", m=("mean", "x"))
    assert whole.run(data).rows == [(len(data), float(xs.mean()) if data else None)]


def test_filter_union_anyof_and_keys() -> None:
    flow = Flow("u", {"x": int})
    evens = flow.filter(lambda x: x % 2 == 0)
    odds = flow.filter(lambda x: x % 2 == 1)
    flow.output(evens)
    assert flow.run([(i,) for i in range(6)]).keys == [0, 2, 4]
    flow.output(evens.union(odds))
    got = flow.run([(i,) for i in range(6)])
    assert got.column("x") == [0, 2, 4, 1, 3, 5] and got.keys == [0, 2, 4, 1, 3, 5]
    flow.output(evens.anyof(odds))
    assert flow.run([(i,) for i in range(6)]).column("x") == [0, 2, 4]


def test_lookup_by_column_and_constant_and_missing_keys() -> None:
    store = Store("vecs", {"a": np.arange(3.0), "b": np.ones(3)})
    flow = Flow("l", {"user": str})
    flow.lookup(store, "user").lookup(store, const="b", column="b_vec")
    got = flow.run([("b",), ("a",)])
    assert np.array_equal(got.rows[0][1], np.ones(3)) and np.array_equal(got.rows[1][2], np.ones(3))
    missing = r"store 'vecs' has no key 'zz' \(lookup operator 'lookup_vecs'\)"
    with pytest.raises(LookupKeyError, match=missing):
        flow.run([("zz",)])
    lenient = Flow("l2", {"user": str})
    lenient.lookup(store, "user", default=None)
    assert lenient.run([("zz",)]).rows == [("zz", None)]


def test_an_operator_that_raises_is_named() -> None:
    def boom(x: int) -> int:
        raise ValueError(f"bad x {x}")
    flow = Flow("e", {"x": int})
    flow.map(boom)
    with pytest.raises(OperatorFailed, match="operator 'boom' \\(map\\) raised ValueError: bad x 3") as e:
        flow.run([(3,)])
    assert e.value.operator == "boom"


def test_a_wrong_output_is_named() -> None:
    flow = Flow("e", {"x": int})
    flow.map(lambda x: "text", output={"y": int})
    with pytest.raises(OperatorFailed, match=r"operator 'lambda'.*output column 'y': expected int, got str"):
        flow.run([(3,)])


def _linear_model(seed: int = 0) -> Any:
    import torch
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.Tanh(), torch.nn.Linear(64, 8)).eval()


class Scorer:
    """A small torch model, batched."""

    def __init__(self) -> None:
        self.net = _linear_model()

    def __call__(self, x: Array("float32", (64,))) -> Array("float32", (8,)):  # type: ignore[valid-type]
        import torch
        with torch.no_grad():
            return self.net(torch.from_numpy(x)).numpy()


def test_a_padded_batch_gives_every_row_the_same_bits_whatever_its_batch_mates() -> None:
    rng = np.random.default_rng(0)
    xs = [rng.standard_normal(64).astype(np.float32) for _ in range(11)]
    flow = Flow("b", {"x": Array("float32", (64,))})
    flow.map(Scorer, batch=8, name="score")
    spec = flow.graph().node("score").attrs["spec"]
    alone = [map_rows(spec, [(x,)], [0])[0][0] for x in xs]
    together = [r[0] for r in map_rows(spec, [(x,) for x in xs], list(range(11)))]
    shuffled_order = rng.permutation(11)
    shuffled = map_rows(spec, [(xs[i],) for i in shuffled_order], list(range(11)))
    for i in range(11):
        assert alone[i].tobytes() == together[i].tobytes()
        assert shuffled[list(shuffled_order).index(i)][0].tobytes() == alone[i].tobytes()


def _pipeline_flow() -> Flow:
    store = Store("w", {i: float(i) / 10 for i in range(5)})
    flow = Flow("p", {"x": Array("float32", (64,)), "k": int})
    scored = flow.map(Scorer, batch=4, keep=["k"], name="score")
    looked = scored.lookup(store, "k")

    def top(score: Array("float32", (8,)), w: float) -> int:  # type: ignore[valid-type]
        return int(np.argmax(score * w)) if w > 0 else -1
    picked = looked.map(top, keep=["k"]).filter(lambda top: top >= 0)
    picked.groupby("top").agg("count", m=("max", "k"))
    return flow


def test_a_stage_runs_many_requests_as_each_alone() -> None:
    flow = _pipeline_flow()
    g = fuse_chains(flow.graph())
    stage = next(n for n in g if n.op == "fused")
    assert stage.attrs["members"][0] == "score"
    rng = np.random.default_rng(1)
    requests = [flow.table([(rng.standard_normal(64).astype(np.float32), int(k))
                            for k in rng.integers(0, 5, n)]) for n in (1, 3, 6, 2)]
    together = run_stage(stage, [{"in": t} for t in requests])
    assert {name for name, _, _ in together.timings} == set(stage.attrs["members"])
    for t, got in zip(requests, together.outputs, strict=True):
        assert isinstance(got, Table) and got.equals(run_reference(flow.graph(), t))


def test_a_stage_isolates_the_request_that_fails() -> None:
    def picky(x: int) -> int:  # batched: x is a list of 2 values, and so is the result
        if 13 in x:  # type: ignore[operator]
            raise RuntimeError("unlucky")
        return [v + 1 for v in x]  # type: ignore[attr-defined, no-any-return]
    flow = Flow("p", {"x": int})
    flow.map(picky, batch=2)
    node = flow.graph().node("picky")
    res = run_stage(node, [{"in": flow.table([(1,), (2,)])}, {"in": flow.table([(13,)])},
                           {"in": flow.table([(5,)])}])
    assert [r.column("picky") if isinstance(r, Table) else None for r in res.outputs] == [[2, 3], None, [6]]
    assert isinstance(res.outputs[1], OperatorFailed) and "unlucky" in str(res.outputs[1])
