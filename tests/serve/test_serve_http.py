"""The HTTP server against a real client: each bad input gets its status code and a message naming what is
wrong, and the server keeps serving after an operator raises, hangs or kills its worker."""

from __future__ import annotations

import asyncio
import io
import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import aiohttp
import numpy as np
import pytest
from serve_pipelines import faulty

from reflow.serve.server import Server


def post(url: str, body: Any, ctype: str = "application/json", headers: dict[str, str] | None = None,
         path: str = "/") -> tuple[int, Any]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(url + path, data=data, headers={"content-type": ctype, **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            raw = r.read()
            return r.status, json.loads(raw) if r.headers["content-type"] == "application/json" else raw
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    with Server(faulty(), workers=2, max_body_bytes=4096, kill_grace_s=0.5) as srv:
        yield srv


def ok(srv: Server, x: int = 3) -> None:
    """The server still answers a plain request."""
    status, body = post(srv.url, {"x": x, "mode": "ok"})
    assert status == 200, body
    assert body["rows"] == [{"x": x, "risky": 2 * x, "tag": f"tag{2 * x}"}]


def test_json_bodies_in_every_shape(server: Server) -> None:
    ok(server)
    status, body = post(server.url, {"rows": [{"x": 1, "mode": "ok"}, {"x": 2, "mode": "ok"}]})
    assert status == 200 and [r["tag"] for r in body["rows"]] == ["tag2", "tag4"] and body["keys"] == [0, 1]
    status, body = post(server.url, {"columns": {"x": [4, 0], "mode": ["ok", "ok"]}}, path="/faulty")
    assert status == 200 and [r["risky"] for r in body["rows"]] == [8, 0]
    assert get(server.url + "/schema")[1].count("risky") == 1


@pytest.mark.parametrize("body, ctype, status, words", [
    (b"{not json", "application/json", 400, ["malformed JSON"]),
    ({"x": "three", "mode": "ok"}, "application/json", 422, ["column 'x'", "expected int, got str"]),
    ({"x": 1}, "application/json", 422, ["missing ['mode']"]),
    ({"x": 1, "mode": "ok", "y": 2}, "application/json", 422, ["unknown ['y']"]),
    ({"rows": []}, "application/json", 422, ["no rows"]),
    (b"\x00" * 5000, "application/json", 413, ["over the limit of 4096 bytes"]),
    (b"x", "text/plain", 415, ["application/x-npy"]),
    ({"x": 7, "mode": "ok"}, "application/json", 404, ["store 'tags' has no key 14", "lookup operator"]),
    ({"x": 1, "mode": "raise"}, "application/json", 500, ["operator 'risky'", "ValueError", "x=1"]),
])
def test_bad_requests_get_clear_errors_and_the_server_goes_on(server: Server, body: Any, ctype: str,
                                                               status: int, words: list[str]) -> None:
    got, answer = post(server.url, body, ctype)
    assert got == status, answer
    for w in words:
        assert w in answer["error"], (w, answer)
    if status == 500:
        assert answer["operator"] == "risky"
    ok(server)


def test_a_hanging_operator_times_out_with_504_and_is_interrupted(server: Server) -> None:
    t0 = time.monotonic()
    status, answer = post(server.url, {"x": 1, "mode": "hang"}, headers={"X-Reflow-Deadline-Ms": "300"})
    assert status == 504 and "deadline of 300 ms" in answer["error"] and "risky" in answer["error"]
    assert time.monotonic() - t0 < 5
    for _ in range(4):  # both workers are free again: the sleep was interrupted, not waited out
        ok(server)
    cancelled = 'reflow_serve_cancelled_batches_total{flow="faulty",stage="risky"}'
    assert cancelled in get(server.url + "/metrics")[1]


RESTARTS = 'reflow_serve_worker_restarts_total{flow="faulty"}'


def test_an_operator_deaf_to_cancelling_gets_its_worker_restarted(server: Server) -> None:
    before = _count(server, RESTARTS)
    status, _ = post(server.url, {"x": 1, "mode": "stuck"}, path="/?deadline_ms=200")
    assert status == 504
    _eventually_ok(server, before)


def test_a_worker_that_dies_fails_its_request_and_is_restarted(server: Server) -> None:
    before = _count(server, RESTARTS)
    status, answer = post(server.url, {"x": 1, "mode": "die"})
    assert status == 500 and "died" in answer["error"] and "restarted" in answer["error"]
    assert answer["operator"] == "risky"
    _eventually_ok(server, before)


def _eventually_ok(server: Server, restarts_before: float) -> None:
    """The worker is replaced (one more restart, every worker ready again) and requests succeed."""
    end = time.monotonic() + 30
    while _count(server, RESTARTS) <= restarts_before or any(not s.ready for s in server.executor.slots):
        assert time.monotonic() < end, "the worker was not restarted"
        time.sleep(0.05)
    for x in range(4):
        ok(server, x)


def test_probes_and_metrics(server: Server) -> None:
    assert get(server.url + "/healthz") == (200, "ok")
    assert get(server.url + "/readyz") == (200, "ready")
    ok(server)
    text = get(server.url + "/metrics")[1]
    assert 'reflow_serve_operator_seconds_bucket{flow="faulty",le="0.001",operator="risky"}' in text
    assert 'reflow_serve_operator_seconds_count{flow="faulty",operator="lookup_tags"}' in text
    assert 'reflow_serve_requests_total{code="200",flow="faulty"}' in text
    assert 'reflow_serve_requests_total{code="422",flow="faulty"}' in text


def test_a_client_that_leaves_cancels_its_work(server: Server) -> None:
    async def leave() -> None:
        async with aiohttp.ClientSession() as s:
            with pytest.raises(asyncio.TimeoutError):
                await s.post(server.url + "/", json={"x": 1, "mode": "sleep30"},
                             timeout=aiohttp.ClientTimeout(total=0.3))
    before = _count(server, 'reflow_serve_requests_total{code="499",flow="faulty"}')
    asyncio.run(leave())
    end = time.monotonic() + 5
    while _count(server, 'reflow_serve_requests_total{code="499",flow="faulty"}') == before:
        assert time.monotonic() < end, "the server never noticed the client leave"
        time.sleep(0.02)
    t0 = time.monotonic()
    for _ in range(4):
        ok(server)
    assert time.monotonic() - t0 < 5  # no worker is still sleeping its 30 s


def _count(server: Server, line: str) -> float:
    for row in get(server.url + "/metrics")[1].splitlines():
        if row.startswith(line):
            return float(row.split()[-1])
    return 0.0


def test_binary_bodies(no_leaks: None) -> None:
    from serve_pipelines import Scorer

    from reflow.serve import Array, Flow

    flow = Flow("binary", {"x": Array("float32", (32,))})
    flow.map(lambda x: x * 2, output={"y": Array("float32", (32,))})
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 32)).astype(np.float32)
    with Server(flow, workers=1) as srv:
        buf = io.BytesIO()
        np.save(buf, x)
        status, body = post(srv.url, buf.getvalue(), "application/x-npy", {"accept": "application/x-npy"})
        assert status == 200 and np.array_equal(np.load(io.BytesIO(body)), x * 2)
        status, body = post(srv.url, x.tobytes(), "application/octet-stream")
        assert status == 200 and np.array_equal(np.array([r["y"] for r in body["rows"]], np.float32), x * 2)
        buf = io.BytesIO()
        np.savez(buf, x=x[0])
        status, body = post(srv.url, buf.getvalue(), "application/x-npz")
        assert status == 200 and len(body["rows"]) == 1
        status, body = post(srv.url, x.tobytes()[:-3], "application/octet-stream")
        assert status == 422 and "whole number" in body["error"]
        status, body = post(srv.url, b"garbage", "application/x-npy")
        assert status == 400 and "numpy" in body["error"]
    assert Scorer  # the torch scorer is served in test_serve_determinism


def test_overload_sheds_with_503_and_queues_stay_bounded(no_leaks: None) -> None:
    async def burst(url: str) -> list[int]:
        async with aiohttp.ClientSession() as s:
            async def one(i: int) -> int:
                async with s.post(url + "/", json={"x": i % 5, "mode": "sleep0.05"}) as r:
                    await r.read()
                    return r.status
            return list(await asyncio.gather(*(one(i) for i in range(40))))
    with Server(faulty(), workers=1, max_inflight=4) as srv:
        codes = asyncio.run(burst(srv.url))
        assert set(codes) <= {200, 503} and codes.count(200) >= 4 and codes.count(503) >= 20
        assert len(srv.executor.requests) == 0 and not any(srv.executor.queues.values())
        ok(srv)
        assert _count(srv, 'reflow_serve_shed_total{flow="faulty"}') == codes.count(503)


def test_a_server_that_cannot_start_says_why(no_leaks: None) -> None:
    import threading

    from serve_pipelines import broken

    from reflow.errors import ServeError
    from reflow.serve import Flow

    with pytest.raises(ServeError, match=r"worker \d could not start"):
        Server(broken(), workers=1).start()
    lock = threading.Lock()
    flow = Flow("locked", {"x": int})
    flow.map(lambda x: x if lock else 0, output={"y": int}, name="uses_a_lock")
    with pytest.raises(ServeError, match=r"stages \['uses_a_lock'\].*pickle"):
        Server(flow, workers=1).start()


def test_shutdown_drains_requests_in_flight(no_leaks: None) -> None:
    srv = Server(faulty(), workers=1).start()
    results: list[tuple[int, Any]] = []
    import threading
    t = threading.Thread(target=lambda: results.append(post(srv.url, {"x": 2, "mode": "sleep0.5"})))
    t.start()
    time.sleep(0.2)
    srv.stop()  # while the request is running: it finishes first
    t.join()
    assert results[0][0] == 200 and results[0][1]["rows"][0]["risky"] == 4
