"""``POST /stream`` with a real client (aiohttp), full duplex: each line is answered while the client is still
sending, bad lines fail alone, and a client that leaves cancels its stream's work."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest
from serve_pipelines import faulty

from reflow.serve.server import Server

BOUND_S = 60.0  # generous: only a server that waits for the whole body would get near it


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    with Server(faulty(), workers=2, max_body_bytes=2048) as srv:
        yield srv


def line(x: int, mode: str = "ok") -> bytes:
    return json.dumps({"x": x, "mode": mode}).encode() + b"\n"


async def _converse(url: str, lines: list[bytes]) -> list[dict[str, Any]]:
    """Send ``lines`` one at a time, each only after the answer to the one before has come back: a server
    that read the whole body before answering would never answer the first."""
    answered = [asyncio.Event() for _ in lines]
    got: list[dict[str, Any]] = []

    async def body() -> AsyncIterator[bytes]:
        for i, chunk in enumerate(lines):
            if i:
                await asyncio.wait_for(answered[i - 1].wait(), BOUND_S)
            yield chunk

    async with aiohttp.ClientSession() as s, \
            s.post(url + "/stream", data=body(), headers={"content-type": "application/x-ndjson"}) as r:
        assert r.status == 200 and r.headers["content-type"] == "application/x-ndjson"
        async for raw in r.content:
            doc = json.loads(raw)
            got.append(doc)
            answered[doc["index"]].set()
    return got


def test_each_line_is_answered_while_the_client_still_sends(server: Server) -> None:
    lines = [line(x) for x in range(4)] + [b"{not json\n", line(1, "raise"), line(7), b'{"rows": []}\n',
                                           line(2)]
    got = asyncio.run(_converse(server.url, lines))
    by = {d["index"]: d for d in got}
    assert sorted(by) == list(range(len(lines)))  # every line answered once
    for x in range(4):
        assert by[x]["status"] == 200 and by[x]["rows"] == [{"x": x, "risky": 2 * x, "tag": f"tag{2 * x}"}]
    assert by[4]["status"] == 400 and "malformed JSON" in by[4]["error"]
    assert by[5]["status"] == 500 and by[5]["operator"] == "risky" and "ValueError" in by[5]["error"]
    assert by[6]["status"] == 404 and "no key 14" in by[6]["error"]
    assert by[7]["status"] == 422 and "no rows" in by[7]["error"]
    assert by[8]["status"] == 200 and by[8]["rows"][0]["risky"] == 4  # the stream went on after the errors


def test_answers_come_as_they_are_ready_and_a_long_line_ends_the_stream(server: Server) -> None:
    async def send(body: bytes) -> list[dict[str, Any]]:
        async with aiohttp.ClientSession() as s, \
                s.post(server.url + "/stream", data=body, headers={"X-Reflow-Deadline-Ms": "5000"}) as r:
            return [json.loads(raw) async for raw in r.content]
    got = asyncio.run(send(line(1, "hang") + line(2)))  # the hang ends at the stream's 5 s deadline
    assert [(d["index"], d["status"]) for d in got] == [(1, 200), (0, 504)]  # in the order they completed
    got = asyncio.run(send(line(3) + b'{"x": "' + b"9" * 4096))
    by = {d["index"]: d for d in got}
    assert sorted(by) == [0, 1] and by[0]["status"] == 200
    assert by[1]["status"] == 413 and "line 1 is over the limit of 2048 bytes" in by[1]["error"]


def test_a_client_that_leaves_cancels_its_stream(server: Server) -> None:
    async def leave() -> None:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=0.5)) as s:
            with pytest.raises(asyncio.TimeoutError):
                async with s.post(server.url + "/stream", data=line(1, "sleep30") + line(2, "sleep30")) as r:
                    await r.read()  # gives up after 0.5 s and closes the connection
    before = _count(server, "499")
    asyncio.run(leave())
    end = time.monotonic() + BOUND_S
    while _count(server, "499") < before + 2:
        assert time.monotonic() < end, "the server never cancelled the stream's requests"
        time.sleep(0.02)
    got = asyncio.run(_converse(server.url, [line(0), line(1)]))  # both workers free again
    assert [d["status"] for d in got] == [200, 200]


def _count(server: Server, code: str) -> float:
    prefix = f'reflow_serve_requests_total{{code="{code}",flow="faulty"}}'
    return sum(float(r.split()[-1]) for r in server.executor.metrics.render().decode().splitlines()
               if r.startswith(prefix))
