"""Helpers of the serving benchmarks (not a claim): the open-loop load generator, a ``reflow serve`` server in
its own process, and the Ray Serve versions of the example pipelines.

Load generator. Requests arrive as a Poisson process at the offered rate (exponential gaps from a seeded
generator) and each is sent at its *intended* time, whatever happened to the ones before (open loop: a slow
server does not slow the arrivals down); its latency is measured from that intended time, so time spent
waiting to be sent counts (no coordinated omission), into an HdrHistogram. One aiohttp session, no
connection limit, uvloop. A 503 counts as shed, anything else not 200 (or a timeout) as an error.

Ray Serve, fairly tuned (as its docs advise for CPU models): each deployment asks for a fraction of a CPU
(``num_cpus=0.5``) so that every replica fits on the two cores, ``max_ongoing_requests`` is raised to 256,
the models use ``@serve.batch`` with the same batch size and wait as reflow's, the ingress composes the
models through ``DeploymentHandle``s, and bodies are the same ``.npy`` bytes. Models and tables are the
examples' own (examples/serve/), with torch on one thread per replica, as reflow's workers run.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "serve"
sys.path.insert(0, str(EXAMPLES))

SLO_MS = 100.0


@dataclass
class LoadResult:
    """One open-loop run at one offered rate."""

    system: str
    offered: float  # requests per second asked for
    sent: int
    ok: int
    shed: int
    errors: int
    seconds: float
    p50_ms: float
    p99_ms: float
    p999_ms: float
    goodput: float  # answers within the SLO per second

    @property
    def throughput(self) -> float:
        return self.ok / self.seconds


async def _open_loop(url: str, bodies: list[bytes], ctype: str, rate: float, duration: float, seed: int,
                     timeout: float) -> tuple[Any, int, int, int, int, float]:
    import aiohttp
    from hdrh.histogram import HdrHistogram

    hist = HdrHistogram(1, 60_000_000, 3)  # microseconds, 1 us .. 60 s
    rng = np.random.default_rng(seed)
    gaps = rng.exponential(1.0 / rate, size=int(rate * duration * 1.5) + 10)
    times = np.cumsum(gaps)
    times = times[times < duration]
    counts = {"ok": 0, "shed": 0, "errors": 0, "good": 0}
    connector = aiohttp.TCPConnector(limit=0, force_close=False)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=timeout)) as s:
        clock = time.perf_counter  # uvloop's loop.time() counts whole milliseconds
        start = clock() + 0.05

        async def one(i: int, at: float) -> None:
            try:
                async with s.post(url, data=bodies[i % len(bodies)], headers={"content-type": ctype}) as r:
                    await r.read()
                    status = r.status
            except (TimeoutError, aiohttp.ClientError):
                status = -1
            latency_us = (clock() - at) * 1e6
            if status == 200:
                counts["ok"] += 1
                hist.record_value(max(1, int(latency_us)))
                counts["good"] += latency_us <= SLO_MS * 1e3
            elif status == 503:
                counts["shed"] += 1
            else:
                counts["errors"] += 1

        tasks = []
        for i, t in enumerate(times):
            at = start + float(t)
            delay = at - clock()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.ensure_future(one(i, at)))
        await asyncio.gather(*tasks)
        elapsed = max(duration, clock() - start)
    return hist, len(times), counts["ok"], counts["shed"], counts["errors"], counts["good"] / elapsed


def open_loop(system: str, url: str, bodies: list[bytes], ctype: str, rate: float, duration: float,
              seed: int = 0, timeout: float = 5.0) -> LoadResult:
    """Offer ``rate`` requests/s for ``duration`` s (Poisson arrivals) and measure what comes back."""
    import uvloop

    hist, sent, ok, shed, errors, goodput = uvloop.run(
        _open_loop(url, bodies, ctype, rate, duration, seed, timeout))
    q = (lambda p: hist.get_value_at_percentile(p) / 1e3) if ok else (lambda p: float("nan"))
    return LoadResult(system, rate, sent, ok, shed, errors, duration, q(50), q(99), q(99.9), goodput)


def as_dict(r: LoadResult) -> dict[str, Any]:
    return {**asdict(r), "throughput": r.throughput}


def npy(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a, allow_pickle=False)
    return buf.getvalue()


def npz(**cols: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **cols)
    return buf.getvalue()


# -- the pipelines' requests ---------------------------------------------------------------------------------
def cascade_bodies(n: int = 64) -> tuple[list[bytes], str]:
    import cascade

    return [npy(img) for img in cascade.images(n, seed=7)], "application/x-npy"


def recommender_bodies(n: int = 256) -> tuple[list[bytes], str]:
    import recommender

    return [npz(user=np.array([u]), recent=r[None]) for u, r in recommender.requests(n, seed=7)], \
        "application/x-npz"


BODIES = {"cascade": cascade_bodies, "recommender": recommender_bodies}


# -- reflow: `reflow serve` in its own process ---------------------------------------------------------------
@contextmanager
def reflow_server(pipeline: str, workers: int = 2, port: int = 0,
                  extra: tuple[str, ...] = ()) -> Iterator[str]:
    """``reflow serve examples/serve/<pipeline>.py`` as a user runs it; yields its URL."""
    cmd = [sys.executable, "-m", "reflow.cli", "serve", str(EXAMPLES / f"{pipeline}.py"), "--port", str(port),
           "--workers", str(workers), *extra]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), *sys.path])}
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        m = re.search(r"ready on (http://\S+) ", line)
        if not m:
            raise RuntimeError(f"reflow serve did not start: {line}{proc.stderr.read()}")
        yield m.group(1) + "/"
    finally:
        proc.terminate()
        proc.wait(60)


# -- Ray Serve -----------------------------------------------------------------------------------------------
def _ray_cascade(batch: int, wait_s: float, replicas: int) -> Any:
    from ray import serve
    from starlette.requests import Request

    opts: dict[str, Any] = {"ray_actor_options": {"num_cpus": 0.5}, "max_ongoing_requests": 256,
                            "num_replicas": replicas}

    class Model:
        """One of the cascade's CNNs (``which``: Small or Large), on batches that ``@serve.batch`` forms."""

        def __init__(self, which: str) -> None:
            import cascade
            import torch

            torch.set_num_threads(1)
            self.model = getattr(cascade, which)()

        @serve.batch(max_batch_size=batch, batch_wait_timeout_s=wait_s)
        async def __call__(self, imgs: list[np.ndarray]) -> list[tuple[int, float]]:
            g = self.model(np.stack(imgs))
            return list(zip(g.label.tolist(), g.conf.tolist(), strict=True))

    model = serve.deployment(**opts)(Model)

    @serve.deployment(**opts)
    class Cascade:
        def __init__(self, small: Any, large: Any) -> None:
            import cascade

            self.small, self.large, self.threshold = small, large, cascade.THRESHOLD

        async def __call__(self, request: Request) -> Any:
            img = np.load(io.BytesIO(await request.body()), allow_pickle=False)
            label, conf = await self.small.remote(img)
            model = "small"
            if conf < self.threshold:
                big_label, big_conf = await self.large.remote(img)
                if big_conf > conf:
                    label, conf, model = big_label, big_conf, "large"
            return {"rows": [{"label": label, "conf": conf, "model": model}]}

    return Cascade.bind(model.options(name="SmallModel").bind("Small"),
                        model.options(name="LargeModel").bind("Large"))


def _ray_recommender(replicas: int) -> Any:
    from ray import serve
    from starlette.requests import Request

    opts: dict[str, Any] = {"ray_actor_options": {"num_cpus": 0.5}, "max_ongoing_requests": 256,
                            "num_replicas": replicas}

    @serve.deployment(**opts)
    class Table:
        def __init__(self, which: str) -> None:
            import recommender

            store = getattr(recommender, which)
            self.data = store._data

        async def __call__(self, key: str) -> np.ndarray:
            return self.data[key]  # type: ignore[no-any-return]

    @serve.deployment(**opts)
    class Recommender:
        def __init__(self, users: Any, products: Any) -> None:
            self.users, self.products = users, products

        async def __call__(self, request: Request) -> Any:
            import recommender

            with np.load(io.BytesIO(await request.body()), allow_pickle=False) as z:
                user, recent = str(z["user"][0]), z["recent"][0]
            user_vec = await self.users.remote(user)
            items = await self.products.remote(recommender.category(recent, user_vec))
            return {"rows": [{"top5": recommender.top5(user_vec, items).tolist()}]}

    return Recommender.bind(Table.options(name="Users").bind("users"),
                            Table.options(name="Products").bind("products"))


@contextmanager
def ray_serve(pipeline: str, port: int, replicas: int = 1, batch: int = 8, wait_s: float = 0.002,
              cpus: int = 2) -> Iterator[str]:
    """The pipeline on Ray Serve (a private local Ray with ``cpus`` CPUs); yields its URL."""
    from ray import serve

    from reflow.runtime.ray_cluster import connect

    env = {"env_vars": {"PYTHONPATH": os.pathsep.join([str(EXAMPLES), str(ROOT / "src"),
                                                        str(ROOT / "benchmarks")])}}
    with connect(num_cpus=cpus, object_store_mb=300, runtime_env=env, log_to_driver=False):
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        try:
            app = _ray_cascade(batch, wait_s, replicas) if pipeline == "cascade" \
                else _ray_recommender(replicas)
            serve.run(app, name=pipeline, route_prefix="/")
            yield f"http://127.0.0.1:{port}/"
        finally:
            serve.shutdown()


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def warm(url: str, bodies: list[bytes], ctype: str, n: int = 50) -> None:
    """A few sequential requests (models built, caches warm, connections open)."""
    import urllib.request

    for i in range(n):
        req = urllib.request.Request(url, data=bodies[i % len(bodies)], headers={"content-type": ctype})
        with urllib.request.urlopen(req, timeout=60) as r:
            json.loads(r.read())


def wait(seconds: float) -> None:
    time.sleep(seconds)
