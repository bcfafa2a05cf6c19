"""The optimizer's passes keep a flow's meaning (the reference interpreter gives the same tables before and
after), do what they say (fusion, compete, locality, placement, batching), and the server shows their
effect: racing replicas get cancelled, lookups stay where their keys are cached."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from serve_pipelines import CLAIMS, LOSER_SLEEP_S, cached_lookups, racing

from reflow.graph import run_passes, verify
from reflow.serve import Flow, Store, Stream
from reflow.serve.batching import Batcher, Decision
from reflow.serve.executor import LocalExecutor
from reflow.serve.interpret import run_reference
from reflow.serve.optimize import Optimizations, compete, fuse, fuse_whole, optimize
from reflow.serve.plan import stage_plan
from reflow.serve.server import Server
from reflow.serve.table import Table

STORE = Store("w", {i: float(i) for i in range(8)})


def _random_flow(choices: list[int]) -> Flow:
    """A flow grown from ``choices``: maps, filters, lookups, joins, unions, a racing map, an aggregate."""
    flow = Flow("rand", {"x": int, "y": int})
    streams: list[Stream] = [flow]
    for i, c in enumerate(choices):
        s = streams[-1]
        if c == 0:
            streams.append(s.map(lambda x, y, i=i: (x + y + i) % 8, output={"x": int}, keep=["y"]))
        elif c == 1:
            streams.append(s.filter(lambda x, i=i: (x + i) % 3 != 0))
        elif c == 2:
            streams.append(s.lookup(STORE, "x", column=f"w{i}").map(lambda x, y: (x * 3 + y) % 8,
                                                                     output={"x": int}, keep=["y"]))
        elif c == 3:
            other = streams[len(streams) // 2].filter(lambda y: y % 2 == 0)
            streams.append(s.join(other.map(lambda x: x, output={"z": int}, keep=["x", "y"]), how="left",
                                  on=None).map(lambda x, y, z: (x + (z or 0)) % 8, output={"x": int},
                                               keep=["y"]))
        elif c == 4:
            other = streams[0].filter(lambda y: y > 2).map(lambda x, y: (x + 1) % 8, output={"x": int},
                                                           keep=["y"])
            streams.append(s.union(other))
        else:
            streams.append(s.map(lambda x, y: (x * y) % 8, output={"x": int}, keep=["y"],
                                 high_variance=True, replicas=2))
    streams[-1].groupby("x").agg(n="count", s=("sum", "y"))
    return flow


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, 5), min_size=1, max_size=6),
       st.lists(st.tuples(st.integers(0, 7), st.integers(0, 7)), min_size=1, max_size=6),
       st.sampled_from([Optimizations(), Optimizations(whole=True), Optimizations(locality=False),
                        Optimizations(fusion=False, compete=False)]))
def test_optimized_plans_mean_what_the_flow_means(choices: list[int], rows: list[tuple[int, int]],
                                                   opts: Optimizations) -> None:
    flow = _random_flow(choices)
    table = flow.table(rows)
    plan = optimize(flow, 2, opts)
    verify(plan.graph)
    assert run_reference(plan.graph, table).equals(flow.run(table))
    for sp in plan.stages.values():  # every stage can run alone, from its own node
        assert sp.members


def test_fusion_makes_one_stage_of_a_chain_but_starts_one_at_a_keyed_lookup() -> None:
    flow = Flow("chain", {"x": int})
    s = flow.map(lambda x: x + 1, output={"x": int}, name="a")
    s = s.map(lambda x: x % 8, output={"x": int}, name="b")
    s.lookup(STORE, "x", column="w").map(lambda w: w * 2, output={"y": float}, name="c")
    g = flow.graph()
    fused = run_passes(g, [fuse])
    assert [n.attrs.get("members") for n in fused if n.op == "fused"] == [["a", "b"], ["lookup_w", "c"]]
    assert [n.attrs.get("members") for n in fuse(g, locality=False) if n.op == "fused"] == \
        [["a", "b", "lookup_w", "c"]]
    whole = run_passes(g, [fuse_whole])
    assert whole.names == ["input", "pipeline", "output"]
    plan = optimize(flow, 2)
    assert plan.stages["lookup_w"].locality is not None and plan.stages["a"].locality is None


def test_compete_races_replicas_on_different_workers() -> None:
    flow = Flow("c", {"x": int})
    flow.map(lambda x: x, output={"y": int}, name="slow", high_variance=True, replicas=3).map(
        lambda y: y, output={"z": int}, name="after")
    g = run_passes(flow.graph(), [compete])
    assert g.predecessors("slow") == ["slow#1", "slow#2", "slow#3"] and g.node("slow").op == "serve.anyof"
    assert g.successors("slow") == ["after"]
    plan = optimize(flow, 3)
    assert sorted(plan.stages[f"slow#{i}"].home for i in (1, 2, 3)) == [0, 1, 2]  # type: ignore[type-var]
    assert all(plan.stages[f"slow#{i}"].workers == (0, 1, 2) for i in (1, 2, 3))  # any free worker runs any
    assert plan.stages["slow"].in_server
    assert plan.branches["slow"] == [frozenset({f"slow#{i}"}) for i in (1, 2, 3)]


class _Q:
    def __init__(self, rows: int, since: float) -> None:
        self.rows, self.since = rows, since


def _batcher(batch: int, wait: float = 0.0, target: float | None = None, batching: bool = True) -> Batcher:
    flow = Flow("b", {"x": int})
    kw: dict[str, Any] = {"latency_target_ms": target * 1e3} if target else {}
    flow.map(lambda x: x, output={"y": int}, batch=batch, max_wait_ms=wait * 1e3, **kw)
    return Batcher(stage_plan(flow.graph().node("lambda"), (0,), batching=batching))


def test_fixed_batches_fill_or_wait_out_their_time() -> None:
    b = _batcher(8, wait=0.01)
    assert b.decide([_Q(3, 0.0)], now=0.005).take == 0 and b.decide([_Q(3, 0.0)], now=0.005).wake == 0.01
    assert b.decide([_Q(3, 0.0)], now=0.011).take == 1
    assert b.decide([_Q(3, 0.0), _Q(5, 0.001)], now=0.001).take == 2  # 8 rows: full
    assert b.decide([_Q(6, 0.0), _Q(5, 0.001)], now=0.001).take == 1  # the second would not fit
    assert _batcher(0).decide([_Q(1, 0.0)] * 40, now=0.0).take == 16  # no model: take what is there
    off = _batcher(8, wait=0.01, batching=False)
    assert off.decide([_Q(1, 0.0)] * 5, now=0.0).take == 1


def test_adaptive_batches_pick_the_largest_size_that_meets_the_target() -> None:
    b = _batcher(16, target=0.02)
    assert b.sizes == [1, 2, 4, 8, 16]
    for size, seconds in ((1, 0.001), (2, 0.0015), (4, 0.002), (8, 0.008), (16, 0.016)):
        b.observe(size, seconds)
    assert b.goal() == 8  # 16 rows take 16 ms, over half the 20 ms target
    d = b.decide([_Q(3, 0.0)], now=0.001)
    assert d.take == 0 and d.wake == pytest.approx(0.02 - 0.008)  # waits as long as the target allows
    d = b.decide([_Q(3, 0.0)], now=0.013)
    assert d.take == 1 and d.pad == 4  # three rows run as a batch of four
    assert b.decide([_Q(4, 0.0), _Q(4, 0.0), _Q(4, 0.0)], now=0.0).take == 2  # 8 rows: the goal
    b.observe(8, 0.05)
    b.observe(8, 0.05)
    assert b.goal() == 4  # slower now: smaller batches


def test_adaptive_batches_grow_when_the_queue_builds() -> None:
    b = _batcher(16, target=0.02)
    for size in b.sizes:
        b.observe(size, 0.004 + 0.001 * size)  # a fixed cost per call plus a cost per row
    assert b.goal() == 4  # 8 ms: the largest that fits in half the target
    d = b.decide([_Q(1, 0.0)] * 3, now=0.001)
    assert d.take == 0 and d.wake == pytest.approx(0.02 - 0.008)  # a short queue waits for more, as before
    # 16 queued rows: 4 batches of 4 answer the last row after 32 ms, 2 of 8 after 24, one of 16 after 20.
    assert b.decide([_Q(1, 0.0)] * 16, now=0.0) == Decision(16, None, 16)
    assert b.decide([_Q(1, 0.0)] * 6, now=0.0) == Decision(6, None, 8)  # 8 now (12 ms) beats 4 then 2 (14)
    # Overload made every batch slower than the target: the rule that only looked at batch time fell back to
    # batches of one (the collapse); counting the queue's wait, the batches grow to the largest size.
    for _ in range(30):
        for size in b.sizes:
            b.observe(size, 0.025 + 0.002 * size)
    assert b.goal() == 1
    assert b.decide([_Q(1, 0.0)] * 40, now=0.0) == Decision(16, None, 16)
    assert b.decide([_Q(1, 0.0)] * 2, now=0.0).take == 2  # two queued rows beat one: both go at once


def test_adaptive_batches_count_every_replica_of_the_stage() -> None:
    flow = Flow("b", {"x": int})
    flow.map(lambda x: x, output={"y": int}, batch=16, latency_target_ms=20)
    one, four = (Batcher(stage_plan(flow.graph().node("lambda"), tuple(range(n)))) for n in (1, 4))
    for b in (one, four):
        for size in b.sizes:
            b.observe(size, 0.004 + 0.001 * size)
    # 16 rows: one worker answers them all soonest in one batch of 16 (20 ms); four workers, in four
    # batches of 4 side by side (8 ms).
    assert one.decide([_Q(1, 0.0)] * 16, now=0.0).take == 16
    assert four.decide([_Q(1, 0.0)] * 16, now=0.0).take == 4


def _post(url: str, body: Any) -> Any:
    req = urllib.request.Request(url + "/", data=json.dumps(body).encode(),
                                 headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


def _metric(srv: Server, prefix: str) -> float:
    """The sum of the metric's samples whose line starts with ``prefix`` (0 if none)."""
    return sum(float(line.split()[-1]) for line in srv.executor.metrics.render().decode().splitlines()
               if line.startswith(prefix))


def test_racing_replicas_answer_once_and_the_loser_is_cancelled(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CLAIMS, str(tmp_path))  # the workers inherit it
    requests = 8
    with Server(racing(), workers=2) as srv:
        stages = srv.executor.plan.stages
        assert {stages[f"straggler#{i}"].home for i in (1, 2)} == {0, 1}  # the replicas race apart
        for x in range(requests):
            assert _post(srv.url, {"x": x})["rows"] == [{"straggler": 2 * x}]  # the winner's, once
        # Every race's loser was still running (it claimed the request and sleeps LOSER_SLEEP_S) when the
        # winner answered; each was cancelled, and an interrupted batch reports no operator time.
        assert _metric(srv, 'reflow_serve_cancelled_batches_total{flow="racing"') == requests
        count = 'reflow_serve_operator_seconds_count{flow="racing",operator="straggler#'
        assert _metric(srv, count + '1"}') + _metric(srv, count + '2"}') == requests
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted(str(x) for x in range(requests))


def test_a_racing_replica_runs_on_any_free_worker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 no_leaks: None) -> None:
    """Losers run to their end here (as in Cloudflow), so the first race's loser keeps its worker for
    ``LOSER_SLEEP_S``. The second request's replica whose home that worker is must not wait for it while a
    third worker idles: it runs there, and the second race is decided at once."""
    monkeypatch.setenv(CLAIMS, str(tmp_path))  # the workers inherit it

    async def main() -> list[Any]:
        ex = LocalExecutor(optimize(racing(), 3), deadline=LOSER_SLEEP_S / 2, interrupt=False)
        await ex.start()
        try:
            first = await ex.submit(Table({"x": int}, [(1,)]))
            busy = [s.index for s in ex.slots if s.busy is not None]  # the first race's loser, sleeping
            assert len(busy) == 1
            second = await ex.submit(Table({"x": int}, [(2,)]))
            still = busy[0] in [s.index for s in ex.slots if s.busy is not None]  # (with the second's loser)
            return [first.to_records(), second.to_records(), still]
        finally:
            await ex.close()

    first, second, loser_still_runs = asyncio.run(main())
    assert first == [{"straggler": 2}] and second == [{"straggler": 4}]
    assert loser_still_runs


@pytest.mark.parametrize("locality", [True, False])
def test_locality_routes_requests_to_the_cache_that_holds_their_key(locality: bool) -> None:
    keys = [f"k{i % 4}" for i in range(24)]
    with Server(cached_lookups(), workers=2, optimize=Optimizations(locality=locality)) as srv:
        for k in keys:
            assert _post(srv.url, {"key": k})["rows"][0]["total"] == float(k[1:]) * 1000
        fetched = _metric(srv, 'reflow_serve_store_fetches_total{flow="cached",store="vectors"}')
    if locality:
        assert fetched <= 6  # each key fetched about once: it stays with the worker that cached it
    else:
        assert fetched >= 12  # one worker takes every request and its two-key cache thrashes
    assert np.isfinite(fetched)
