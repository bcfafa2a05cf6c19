"""A request's answer is the same bits whatever the worker count and whichever requests shared its batch:
the server answers exactly what ``flow.run`` (the reference interpreter) answers."""

from __future__ import annotations

import asyncio
import io

import aiohttp
import numpy as np
from serve_pipelines import inputs, scoring

from reflow.serve.server import Server


async def _ask_all(url: str, xs: list[np.ndarray], order: list[int]) -> dict[int, bytes]:
    async with aiohttp.ClientSession() as s:
        async def one(i: int) -> tuple[int, bytes]:
            buf = io.BytesIO()
            np.save(buf, xs[i])
            async with s.post(url + "/", data=buf.getvalue(), headers={
                    "content-type": "application/x-npy", "accept": "application/x-npy"}) as r:
                assert r.status == 200, await r.text()
                return i, await r.read()
        return dict(await asyncio.gather(*(one(i) for i in order)))


def _batched_rows(srv: Server) -> tuple[float, float]:
    """(batches of the model, of which with a single row)."""
    text = srv.executor.metrics.render().decode()
    count = one = 0.0
    for line in text.splitlines():
        if line.startswith('reflow_serve_batch_rows_count{flow="scoring",operator="score"}'):
            count = float(line.split()[-1])
        if line.startswith('reflow_serve_batch_rows_bucket{flow="scoring",le="1.0",operator="score"}'):
            one = float(line.split()[-1])
    return count, one


def test_answers_do_not_depend_on_workers_or_batch_mates(no_leaks: None) -> None:
    import torch

    torch.set_num_threads(1)  # as each worker runs (threads_per_worker=1): torch's kernels differ by threads
    flow = scoring()
    xs = inputs(24, rows=1) + inputs(8, rows=3, seed=1)
    want = [flow.run(flow.table(x=list(x))).column("score") for x in xs]
    rng = np.random.default_rng(0)
    for workers in (1, 2):
        order = list(rng.permutation(len(xs)))
        with Server(flow, workers=workers) as srv:
            got = asyncio.run(_ask_all(srv.url, xs, order))
            batches, singles = _batched_rows(srv)
        assert batches < len(xs) and singles < batches  # requests did share batches
        for i, x in enumerate(xs):
            answer = np.load(io.BytesIO(got[i]))
            assert answer.shape == (len(x), 4)
            assert answer.tobytes() == np.stack(want[i]).tobytes(), f"request {i} with {workers} workers"
