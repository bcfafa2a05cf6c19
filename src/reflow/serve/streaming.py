"""Streaming requests: ``POST /stream``, newline-delimited JSON both ways, full duplex.

Each line of the request body is one request (a JSON table, as ``POST /`` takes it), submitted as soon as
the line arrives, while the client is still sending the rest: a camera can stream frames and read each
frame's answer before it sends the next. Each answer is one line, written as soon as it is ready (so in the
order answers complete, not the order lines came): ``{"index": i, "status": 200, "schema", "rows", "keys"}``
or ``{"index": i, "status": code, "error": ..., "type": ...}`` with the code ``POST /`` would answer (a bad
line fails alone; the stream goes on). ``index`` counts the body's non-empty lines from 0. A line longer
than ``max_body_bytes`` ends the stream with a 413 line; a client that disconnects cancels every request of
its stream still running. Deadlines (header or query parameter) apply to each line's request.

This is an ASGI app of its own rather than a Starlette endpoint: Starlette's streaming response reads the
request's messages itself (to notice a disconnect), which would take the lines this one reads.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

from starlette.datastructures import Headers, QueryParams

from reflow.errors import TableError
from reflow.serve.executor import LocalExecutor
from reflow.serve.table import Schema

NDJSON = "application/x-ndjson"


class StreamEndpoint:
    """The ``/stream`` route's ASGI app: lines in, answers out as each is ready (see the module docstring)."""

    def __init__(self, executor: LocalExecutor, schema: Schema, max_line_bytes: int,
                 done: Callable[[int, float], None]) -> None:
        self.executor, self.schema, self.max_line, self.done = executor, schema, max_line_bytes, done

    async def __call__(self, scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]) \
            -> None:
        from reflow.serve.app import BodyError, deadline_of, error_body, parse_table

        try:
            deadline = deadline_of(Headers(scope=scope), QueryParams(scope.get("query_string", b"")))
        except BodyError as e:
            status, body = error_body(e)
            await send({"type": "http.response.start", "status": status,
                        "headers": [(b"content-type", b"application/json")]})
            await send({"type": "http.response.body", "body": json.dumps(body).encode()})
            return
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", NDJSON.encode())]})
        lock = asyncio.Lock()  # one line at a time on the wire

        async def write(doc: dict[str, Any]) -> None:
            async with lock:
                await send({"type": "http.response.body", "body": json.dumps(doc).encode() + b"\n",
                            "more_body": True})

        async def one(index: int, line: bytes, t0: float) -> None:
            try:
                table = parse_table(self.schema, "application/json", line)
                if len(table) == 0:
                    raise TableError("the line's table has no rows; send at least one")
                answer = await self.executor.submit(table, deadline)
                doc = {"index": index, "status": 200, **answer.to_json()}
            except asyncio.CancelledError:
                self.done(499, t0)
                raise
            except BaseException as e:
                status, body = error_body(e)
                doc = {"index": index, "status": status, **body}
            self.done(doc["status"], t0)
            await write(doc)

        jobs: set[asyncio.Task[None]] = set()
        index, pending, gone = 0, b"", False
        while True:  # read lines, starting each request as its line arrives
            message = await receive()
            if message["type"] == "http.disconnect":
                gone = True
                break
            pending += message.get("body", b"")
            *lines, pending = pending.split(b"\n")
            more = message.get("more_body", False)
            if not more and pending:
                lines, pending = [*lines, pending], b""
            too_long = False
            for line in lines:
                too_long = len(line) > self.max_line
                if too_long:
                    break
                if line.strip():
                    jobs.add(asyncio.ensure_future(one(index, line, time.perf_counter())))
                    index += 1
            if too_long or len(pending) > self.max_line:
                status, body = error_body(BodyError(413, f"line {index} is over the limit of {self.max_line} "
                                                         "bytes; the stream ends here"))
                await write({"index": index, "status": status, **body})
                break
            if not more:
                break
        if not gone and jobs:  # the body is in: answer the rest, unless the client leaves first
            leaving = asyncio.ensure_future(_disconnect(receive))
            while not leaving.done() and any(not j.done() for j in jobs):
                await asyncio.wait([leaving, *(j for j in jobs if not j.done())],
                                   return_when=asyncio.FIRST_COMPLETED)
            gone = leaving.done()
            leaving.cancel()
        if gone:  # give up what is still running: its client is not there to read it
            for job in jobs:
                job.cancel()
        await asyncio.gather(*jobs, return_exceptions=True)
        if not gone:
            await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _disconnect(receive: Callable[..., Any]) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
