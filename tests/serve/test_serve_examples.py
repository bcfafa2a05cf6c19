"""The four example pipelines (examples/serve/), loaded as ``reflow serve`` loads them, served over HTTP,
answer what ``flow.run`` answers, for requests sent all at once (so they share batches)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from reflow.serve.loader import load_pipeline
from reflow.serve.server import Server
from reflow.serve.table import Table
from reflow.serve.types import to_json

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "serve"


def _requests(name: str, module: Any) -> list[list[tuple[Any, ...]]]:
    if name == "cascade":
        imgs = module.images(12, seed=3)
        return [[(imgs[i],)] for i in range(10)] + [[(imgs[10],), (imgs[11],)]]
    if name == "video":
        frames = module.frames(12, seed=4)
        return [[(f,)] for f in frames[:10]] + [[(frames[10],), (frames[11],)]]
    if name == "translation":
        return [[r] for r in module.requests(6, seed=5)]
    return [[r] for r in module.requests(10, seed=6)]


async def _ask(url: str, bodies: list[dict[str, Any]]) -> list[Any]:
    async with aiohttp.ClientSession() as s:
        async def one(body: dict[str, Any]) -> Any:
            async with s.post(url + "/", json=body) as r:
                assert r.status == 200, await r.text()
                return await r.json()
        return list(await asyncio.gather(*(one(b) for b in bodies)))


@pytest.mark.parametrize("name", ["cascade", "video", "translation", "recommender"])
def test_an_example_served_answers_as_flow_run(name: str) -> None:
    import torch

    torch.set_num_threads(1)  # as the workers run
    flow = load_pipeline(EXAMPLES / f"{name}.py")
    module = __import__(name)
    tables = [flow.table(rows) for rows in _requests(name, module)]
    want = [flow.run(t) for t in tables]
    assert any(len(w) for w in want)
    bodies = [{"rows": Table.to_json(t)["rows"]} for t in tables]
    with Server(flow, workers=2) as srv:
        got = asyncio.run(_ask(srv.url, bodies))
    for w, g in zip(want, got, strict=True):
        rows = [{n: to_json(v) for n, v in r.items()} for r in w.to_records()]
        assert g["rows"] == json.loads(json.dumps(rows)) and g["keys"] == w.keys
