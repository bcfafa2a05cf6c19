"""The HTTP front end: a Starlette app over a ``LocalExecutor``.

    POST /            a request: a table in, the flow's table out
    POST /stream      a stream of requests, one JSON table a line, answered a line each as ready
                      (``reflow.serve.streaming``)
    GET  /schema      the flow's input and output columns
    GET  /healthz     200 while the process serves at all
    GET  /readyz      200 once every stage has a live worker, 503 while starting or draining
    GET  /metrics     Prometheus text: requests, latencies (per request and per operator), batches, queues

Bodies. ``application/json`` (the default): ``{"rows": [{col: value}, ...]}``, ``{"columns": {col: [...]}}``,
a list of row objects or one row object; arrays as nested lists, bytes as base64 text. Binary:
``application/x-npy`` (one array: the value of the flow's one array column, one row or a stack of rows),
``application/x-npz`` (one array per column, a row per index of the first axis) and
``application/octet-stream`` (raw bytes: a ``bytes`` column's value, or rows of the one fixed-shape array
column). The answer is JSON (``{"schema", "rows", "keys"}``), or ``.npy`` with ``Accept: application/x-npy``
when the output has one array column.

Status codes: 400 malformed body, 413 body over ``max_body_bytes``, 422 a table that does not fit the
schema or has no rows, 404 a lookup key that is not there, 500 an operator that raised (naming it; the server
keeps serving), 503 overloaded or not ready, 504 past the deadline (``X-Reflow-Deadline-Ms`` header or
``deadline_ms`` query parameter; default from the server). A client that disconnects cancels its request.
"""

from __future__ import annotations

import asyncio
import io
import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import numpy as np
from starlette.applications import Starlette
from starlette.datastructures import Headers, QueryParams
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from reflow.errors import (
    DeadlineExceeded,
    LookupKeyError,
    OperatorFailed,
    Overloaded,
    ServeError,
    TableError,
)
from reflow.serve.executor import LocalExecutor
from reflow.serve.streaming import StreamEndpoint
from reflow.serve.table import Schema, Table

MAX_BODY = 16 * 1024 * 1024
STATUS: tuple[tuple[type[BaseException], int], ...] = (
    (Overloaded, 503), (DeadlineExceeded, 504), (LookupKeyError, 404), (TableError, 422),
    (OperatorFailed, 500))


class BodyError(Exception):
    """A request body that cannot be read: ``status`` says which HTTP error."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refusing (413) one over ``limit`` bytes before reading it where the length is declared."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyError(413, f"body of {int(declared)} bytes is over the limit of {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyError(413, f"body is over the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def parse_table(schema: Schema, content_type: str, body: bytes) -> Table:
    """The request's table, from any of the body formats (see the module docstring)."""
    kind = content_type.split(";")[0].strip().lower() or "application/json"
    if kind in ("application/json", "text/json"):
        try:
            doc = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise BodyError(400, f"malformed JSON: {e}") from None
        return Table.from_json(schema, doc)
    if kind == "application/x-npy":
        name = _only(schema, ("array", "tensor"), "an .npy body")
        arr = _load(body, np.load)
        return _rows_of(schema, {name: arr}, name)
    if kind == "application/x-npz":
        with _load(body, np.load) as npz:
            cols = {k: npz[k] for k in npz.files}
        return _rows_of(schema, cols, next(iter(schema.names)))
    if kind == "application/octet-stream":
        if len(schema) == 1 and schema.types[0].kind == "bytes":
            return Table.make(schema, [(body,)], [0])
        name = _only(schema, ("array",), "a raw body")
        t = schema[name]
        if t.dtype is None or t.shape is None or None in t.shape:
            raise BodyError(415, f"column {name!r} is {t}: a raw body needs a fixed dtype and shape; "
                                 "send .npy")
        shape = tuple(int(d) for d in t.shape if d is not None)
        per_row = np.dtype(t.dtype).itemsize * int(np.prod(shape))
        if per_row == 0 or len(body) % per_row:
            raise TableError(f"a raw body of {len(body)} bytes is not a whole number of {t} rows "
                             f"({per_row} bytes each)")
        arr = np.frombuffer(body, dtype=t.dtype).reshape((-1, *shape))
        return _rows_of(schema, {name: arr}, name)
    raise BodyError(415, f"unsupported content type {kind!r}: send application/json, application/x-npy, "
                         "application/x-npz or application/octet-stream")


def _only(schema: Schema, kinds: tuple[str, ...], what: str) -> str:
    names = [n for n, t in schema.items() if t.kind in kinds]
    if len(schema) != 1 or len(names) != 1:
        raise BodyError(415, f"{what} carries one array, but the flow takes columns {schema}; send JSON or "
                             ".npz (one array per column)")
    return names[0]


def _load(body: bytes, load: Callable[..., Any]) -> Any:
    try:
        return load(io.BytesIO(body), allow_pickle=False)
    except Exception as e:
        raise BodyError(400, f"malformed numpy body: {e}") from None


def _rows_of(schema: Schema, cols: dict[str, Any], first: str) -> Table:
    """Rows from one array per column: a column's array is one row's value, or a stack of rows."""
    t = schema[first]
    arr = cols.get(first)
    single = arr is not None and t.shape is not None and np.ndim(arr) == len(t.shape)
    if single:
        cols = {k: [v] for k, v in cols.items()}
    if t.kind == "tensor":
        import torch

        cols = {k: [torch.from_numpy(np.array(x)) for x in v] if schema[k].kind == "tensor" else v
                for k, v in cols.items() if k in schema} | {k: v for k, v in cols.items() if k not in schema}
    return Table.from_columns(schema, {k: list(v) for k, v in cols.items()})


def error_body(e: BaseException) -> tuple[int, dict[str, Any]]:
    """The HTTP status for ``e`` and the JSON that says what went wrong (and which operator, if one)."""
    status = next((code for cls, code in STATUS if isinstance(e, cls)), 500)
    if isinstance(e, BodyError):
        status = e.status
    body: dict[str, Any] = {"error": str(e), "type": type(e).__name__}
    if isinstance(e, OperatorFailed) and e.operator:
        body["operator"] = e.operator
    return status, body


def error_response(e: BaseException) -> JSONResponse:
    status, body = error_body(e)
    headers = {"Retry-After": "1"} if status == 503 else None
    return JSONResponse(body, status_code=status, headers=headers)


def deadline_of(headers: Headers, query: QueryParams) -> float | None:
    """The request's own deadline in seconds (``X-Reflow-Deadline-Ms`` or ``?deadline_ms=``), if it asks."""
    deadline_ms = headers.get("x-reflow-deadline-ms") or query.get("deadline_ms")
    return None if deadline_ms is None else _positive(deadline_ms) / 1e3


def answer(table: Table, accept: str) -> Response:
    arrays = [n for n, t in table.schema.items() if t.kind == "array"]
    if "application/x-npy" in accept and len(table.schema) == 1 and arrays:
        buf = io.BytesIO()
        np.save(buf, np.stack(table.column(arrays[0])) if len(table) else np.zeros((0,)), allow_pickle=False)
        return Response(buf.getvalue(), media_type="application/x-npy")
    return Response(json.dumps(table.to_json()), media_type="application/json")


async def _until_disconnect(request: Request) -> None:
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


def make_app(executor: LocalExecutor, schema: Schema, out: Schema, *, max_body_bytes: int = MAX_BODY,
             start_timeout: float = 120.0) -> Starlette:
    """The Starlette app serving ``executor`` (started in the background, so /healthz answers at once)."""
    metrics = executor.metrics
    flow = executor.plan.graph.name
    state: dict[str, Any] = {}

    def done(code: int, t0: float) -> None:
        metrics.answered(code, time.perf_counter() - t0)

    async def run(request: Request) -> Response:
        t0 = time.perf_counter()
        try:
            body = await read_body(request, max_body_bytes)
            table = parse_table(schema, request.headers.get("content-type", ""), body)
            if len(table) == 0:
                raise TableError("the request's table has no rows; send at least one")
            deadline = deadline_of(request.headers, request.query_params)
        except (BodyError, ServeError) as e:
            response: Response = error_response(e)
            done(response.status_code, t0)
            return response
        job = asyncio.ensure_future(executor.submit(table, deadline))
        gone = asyncio.ensure_future(_until_disconnect(request))
        await asyncio.wait([job, gone], return_when=asyncio.FIRST_COMPLETED)
        if not job.done():  # the client went away: give up its work
            job.cancel()
            await asyncio.gather(job, return_exceptions=True)
            done(499, t0)
            return Response(status_code=499)
        gone.cancel()
        try:
            response = answer(job.result(), request.headers.get("accept", ""))
        except BaseException as e:
            response = error_response(e)
        done(response.status_code, t0)
        return response

    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok")

    async def readyz(request: Request) -> Response:
        if executor.ready:
            return PlainTextResponse("ready")
        why = state.get("error") or ("draining" if state.get("draining") else "starting")
        return PlainTextResponse(f"not ready: {why}", status_code=503)

    async def metrics_endpoint(request: Request) -> Response:
        return Response(metrics.render(), media_type="text/plain; version=0.0.4")

    async def schema_endpoint(request: Request) -> Response:
        return JSONResponse({"flow": flow, "input": {n: str(t) for n, t in schema.items()},
                             "output": {n: str(t) for n, t in out.items()}})

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async def start() -> None:
            try:
                await executor.start(start_timeout)
            except BaseException as e:
                state["error"] = f"{type(e).__name__}: {e}"
                raise
        state["start"] = asyncio.ensure_future(start())
        try:
            yield
        finally:
            state["draining"] = True
            await executor.drain()
            state["start"].cancel()
            await executor.close()

    stream = StreamEndpoint(executor, schema, max_body_bytes, done)
    return Starlette(routes=[Route("/", run, methods=["POST"]), Route(f"/{flow}", run, methods=["POST"]),
                             Route("/stream", stream, methods=["POST"]),
                             Route(f"/{flow}/stream", stream, methods=["POST"]),
                             Route("/healthz", healthz), Route("/readyz", readyz),
                             Route("/metrics", metrics_endpoint), Route("/schema", schema_endpoint)],
                     lifespan=lifespan)


def _positive(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        v = -1.0
    if not v > 0:
        raise BodyError(400, f"deadline_ms must be a positive number of milliseconds, got {text!r}")
    return v
