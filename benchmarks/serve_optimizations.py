"""Claim: each of reflow's serving optimizations pays for itself, measured alone (Cloudflow's
microbenchmarks, on reflow's executor).

Every comparison is an A/B in one run, on the same flow, with only the one optimization switched; requests go
straight to the executor (``LocalExecutor.submit``, no HTTP), from an open-loop Poisson generator in this
process or one request at a time (closed loop):

* **fusion**: a chain of 5 maps passing a row of 10 KB, 1 MB or 10 MB along; fused into one stage vs one
  stage per map. Closed loop, median latency.
* **competitive execution**: a straggler stage (a sleep drawn from a gamma distribution, mean 20 ms, one in
  ten far longer), 1, 2 or 3 racing replicas on 4 workers, losers interrupted (reflow) or left to finish
  (as in Cloudflow), at 40 requests/s. p50 and p99.
* **locality**: a lookup of 8 KB, 512 KB or 8 MB values, 8 keys, each worker caching 4 of them, requests for
  random keys; routed by cached keys vs not. Closed loop, median latency and values fetched.
* **batching**: the cascade's small CNN at an offered load near what one request at a time can serve: one
  row per call (no batching), padded batches of 8 waiting up to 2 ms (fixed), and batches sized to a 20 ms
  target (adaptive). p50, p99 and throughput.

Each A/B runs ``--repeats`` times (every variant of every section once per repeat, so the variants
interleave) and the medians are reported. Writes results/serve_optimizations.json.

    flock -x /tmp/reflow-cpu.lock .venv/bin/python benchmarks/serve_optimizations.py
    flock -x /tmp/reflow-cpu.lock .venv/bin/python benchmarks/serve_optimizations.py --quick
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from serve_peers import EXAMPLES
from tqdm import tqdm

from reflow.serve import Array, Flow, Store
from reflow.serve.executor import LocalExecutor
from reflow.serve.optimize import Optimizations, optimize
from reflow.serve.table import Table

sys.path.insert(0, str(EXAMPLES))


async def _drive(ex: LocalExecutor, tables: list[Table], rate: float | None, n: int, seed: int) \
        -> tuple[list[float], float]:
    """Latencies (s) of ``n`` requests, closed loop (``rate=None``) or Poisson at ``rate``/s; and the span."""
    lat: list[float] = []
    clock = time.perf_counter  # uvloop's loop.time() counts whole milliseconds

    async def one(i: int, at: float) -> None:
        await ex.submit(tables[i % len(tables)])
        lat.append(clock() - at)

    t0 = clock()
    if rate is None:
        for i in range(n):
            await one(i, clock())
    else:
        gaps = np.random.default_rng(seed).exponential(1 / rate, n)
        tasks = []
        for i, at in enumerate(t0 + np.cumsum(gaps)):
            await asyncio.sleep(max(0.0, at - clock()))
            tasks.append(asyncio.ensure_future(one(i, float(at))))
        await asyncio.gather(*tasks)
    return lat, clock() - t0


def measure(flow: Flow, tables: list[Table], opts: Optimizations, workers: int, rate: float | None, n: int,
            warmup: int = 20, **executor: Any) -> dict[str, float]:
    import uvloop

    async def main() -> dict[str, float]:
        ex = LocalExecutor(optimize(flow, workers, opts), dict(flow.stores), deadline=60.0, **executor)
        await ex.start()
        try:
            await _drive(ex, tables, None, warmup, 0)
            lat, span = await _drive(ex, tables, rate, n, 1)
            fetched = sum(v for k, v in _fetches(ex).items())
        finally:
            await ex.close()
        ms = sorted(x * 1e3 for x in lat)
        return {"p50_ms": statistics.median(ms), "p99_ms": ms[min(len(ms) - 1, int(0.99 * len(ms)))],
                "throughput": len(ms) / span, "fetched": fetched}
    return uvloop.run(main())


def _fetches(ex: LocalExecutor) -> dict[str, float]:
    out = {}
    for line in ex.metrics.render().decode().splitlines():
        if line.startswith("reflow_serve_store_fetches_total"):
            out[line.split()[0]] = float(line.split()[-1])
    return out


# -- fusion --------------------------------------------------------------------------------------------------
def passthrough(data: np.ndarray) -> np.ndarray:
    return data


def fusion(sizes: list[int], n: int) -> list[dict[str, Any]]:
    rows = []
    for size in sizes:
        flow = Flow("fusion", {"data": Array("uint8", (size,))})
        s = flow
        for _ in range(5):
            s = s.map(passthrough, names=["data"])
        tables = [flow.table([(np.random.default_rng(i).integers(0, 255, size, dtype=np.uint8),)])
                  for i in range(4)]
        fused = measure(flow, tables, Optimizations(), 2, None, n)
        apart = measure(flow, tables, Optimizations(fusion=False), 2, None, n)
        rows.append({"bytes": size, "fused_p50_ms": fused["p50_ms"], "unfused_p50_ms": apart["p50_ms"],
                     "speedup": apart["p50_ms"] / fused["p50_ms"]})
    return rows


# -- competitive execution -----------------------------------------------------------------------------------
def straggler(val: int) -> int:
    """20 ms on average; a tenth of the calls take 5-10x longer (an unseeded generator: only time varies)."""
    rng = np.random.default_rng()
    time.sleep(min(0.5, rng.gamma(4.0, 0.005) * (rng.uniform(5, 10) if rng.random() < 0.1 else 1.0)))
    return val + 1


def compete(n: int, rate: float) -> list[dict[str, Any]]:
    rows = []
    tables = [Table({"val": int}, [(i,)]) for i in range(8)]
    for replicas, interrupt in ((1, True), (2, False), (2, True), (3, False), (3, True)):
        flow = Flow("compete", {"val": int})
        flow.map(straggler, names=["val"], high_variance=replicas > 1, replicas=max(2, replicas))
        r = measure(flow, tables, Optimizations(compete=replicas > 1), 4, rate, n, interrupt=interrupt)
        rows.append({"replicas": replicas, "losers": "interrupted" if interrupt else "run to the end", **r})
    return rows


# -- locality ------------------------------------------------------------------------------------------------
def checksum(value: np.ndarray) -> float:
    return float(value[::512].sum())


def locality(sizes: list[int], n: int) -> list[dict[str, Any]]:
    rows = []
    for size in sizes:
        data = {f"k{i}": np.full(size // 8, float(i)) for i in range(8)}
        keys = [f"k{i}" for i in np.random.default_rng(0).integers(0, 8, 64)]
        out: dict[str, Any] = {"bytes": size}
        for on in (True, False):
            store = Store("values", data, cache_bytes=4 * size + 1024)
            flow = Flow("locality", {"key": str})
            flow.lookup(store, "key", column="value").map(checksum)
            tables = [flow.table([(k,)]) for k in keys]
            r = measure(flow, tables, Optimizations(locality=on), 2, None, n)
            out["routed" if on else "unrouted"] = {"p50_ms": r["p50_ms"], "fetched": r["fetched"]}
        out["speedup"] = out["unrouted"]["p50_ms"] / out["routed"]["p50_ms"]
        rows.append(out)
    return rows


# -- batching ------------------------------------------------------------------------------------------------
class SmallRow:
    """The cascade's small CNN, one image per call."""

    def __init__(self) -> None:
        import cascade

        self.model = cascade.Small()

    def __call__(self, img: Array("float32", (3, 32, 32))) -> float:  # type: ignore[valid-type]
        return float(self.model(img[None]).conf[0])


class SmallBatch:
    """The cascade's small CNN, a batch of images per call."""

    def __init__(self) -> None:
        import cascade

        self.model = cascade.Small()

    def __call__(self, img: Array("float32", (3, 32, 32))) -> float:  # type: ignore[valid-type]
        return self.model(img).conf  # type: ignore[no-any-return]


def batching(n: int, rates: list[float]) -> list[dict[str, Any]]:
    import cascade

    rows = []
    modes: dict[str, Callable[[Flow], Any]] = {
        "one row per call": lambda f: f.map(SmallRow, name="conf"),
        "fixed (8, 2 ms)": lambda f: f.map(SmallBatch, name="conf", batch=8, max_wait_ms=2),
        "adaptive (20 ms)": lambda f: f.map(SmallBatch, name="conf", batch=16, latency_target_ms=20),
    }
    for rate in rates:
        for mode, build in modes.items():
            flow = Flow("batching", {"img": Array("float32", (3, 32, 32))})
            build(flow)
            tables = [flow.table([(img,)]) for img in cascade.images(32, seed=1)]
            rows.append({"rate": rate, "mode": mode, **measure(flow, tables, Optimizations(), 2, rate, n)})
    return rows


def median_row(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The repeats of one result row as one: the median of each number (nested dicts too), labels kept."""
    out: dict[str, Any] = {}
    for key, value in rows[0].items():
        if isinstance(value, dict):
            out[key] = median_row([r[key] for r in rows])
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and key not in ("bytes", "rate",
                                                                                              "replicas"):
            out[key] = statistics.median(r[key] for r in rows)
        else:
            out[key] = value
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="fewer sizes and requests, one repeat")
    p.add_argument("--repeats", type=int, default=3, help="repeats of every A/B (medians are reported)")
    p.add_argument("--requests", type=int, default=300, help="requests per measurement")
    p.add_argument("--rates", type=float, nargs="*",
                   help="batching's offered rates (default 100, 200, 300 requests/s)")
    p.add_argument("--sizes", type=int, nargs="*",
                   help="fusion's row sizes in bytes (default 10 KB, 1 MB, 10 MB)")
    p.add_argument("--lookups", type=int, nargs="*",
                   help="locality's value sizes in bytes (default 8 KB, 512 KB, 8 MB)")
    p.add_argument("--only", nargs="*", choices=["fusion", "compete", "locality", "batching"],
                   help="run only these sections (each writes results/serve_optimizations_<names>.json)")
    args = p.parse_args()
    n = 60 if args.quick else args.requests
    sizes = args.sizes or ([10_000, 1_000_000] if args.quick else [10_000, 1_000_000, 10_000_000])
    lookups = args.lookups or ([8_192, 8 << 20] if args.quick else [8_192, 512 << 10, 8 << 20])
    repeats = 1 if args.quick else args.repeats
    sections: dict[str, Callable[[], list[dict[str, Any]]]] = {
        "fusion": lambda: fusion(sizes, n),
        "compete": lambda: compete(n, 40.0),
        "locality": lambda: locality(lookups, n),
        "batching": lambda: batching(n * 2, args.rates or ([150.0] if args.quick else [100.0, 200.0, 300.0])),
    }
    chosen = args.only or list(sections)
    runs: list[dict[str, Any]] = []
    out = Path("results")
    out.mkdir(exist_ok=True)
    name = "serve_optimizations" + ("_" + "_".join(args.only) if args.only else "") + ".json"
    results: dict[str, list[dict[str, Any]]] = {}
    with tqdm(total=len(chosen) * repeats, desc="serve_optimizations") as bar:
        for _ in range(repeats):  # every A/B of a repeat before the next repeat: the variants interleave
            run: dict[str, Any] = {}
            for name_ in chosen:
                run[name_] = sections[name_]()
                bar.update(1)
            runs.append(run)
            results = {section: [median_row([r[section][i] for r in runs]) for i in range(len(run[section]))]
                       for section in chosen}
            # written after every repeat: a run cut short keeps the repeats it finished
            (out / name).write_text(json.dumps({"requests": n, "repeats": len(runs), **results}, indent=1))
    print(f"\nmedians of {repeats} repeat(s), each running every variant in turn")
    if "fusion" in results:
        print("fusion: 5 maps passing a row along, closed loop, median latency (2-core VM)")
    for r in results.get("fusion", []):
        print(f"  {r['bytes']:>10,} B  fused {r['fused_p50_ms']:6.2f} ms  unfused "
              f"{r['unfused_p50_ms']:6.2f} ms  {r['speedup']:.2f}x")
    if "compete" in results:
        print("competitive execution: gamma straggler at 40 requests/s, 4 workers")
    for r in results.get("compete", []):
        print(f"  {r['replicas']} replica(s), losers {r['losers']:<15} p50 {r['p50_ms']:6.1f} ms  "
              f"p99 {r['p99_ms']:6.1f} ms")
    if "locality" in results:
        print("locality: lookups of 8 keys, caches of 4 per worker, closed loop")
    for r in results.get("locality", []):
        print(f"  {r['bytes']:>10,} B  routed {r['routed']['p50_ms']:6.2f} ms ({r['routed']['fetched']:.0f} "
              f"fetched)  unrouted {r['unrouted']['p50_ms']:6.2f} ms ({r['unrouted']['fetched']:.0f} fetched)"
              f"  {r['speedup']:.2f}x")
    if "batching" in results:
        print("batching: the cascade's small CNN, open loop")
    for r in results.get("batching", []):
        print(f"  {r['rate']:5.0f}/s  {r['mode']:<17} p50 {r['p50_ms']:7.1f} ms  p99 {r['p99_ms']:7.1f} ms  "
              f"answered {r['throughput']:6.1f}/s")
    (out / name).write_text(json.dumps({"requests": n, "repeats": repeats, **results}, indent=1))
    print(f"wrote results/{name}")


if __name__ == "__main__":
    main()
