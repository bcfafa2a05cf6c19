"""Claim: reflow serves the example pipelines with lower tail latency and more throughput than Ray Serve.

Side by side in one run, on the same machine: ``reflow serve examples/serve/<pipeline>.py --workers 2`` (its
own process, as a user runs it) and the same pipeline on Ray Serve, fairly tuned (see serve_peers.py), each
under an open-loop Poisson load (aiohttp, latency from the intended send time into an HdrHistogram) at
increasing offered rates. Both servers are up throughout, and each repeat runs every rate on both in turn
(the order alternating), so a change in the machine's load falls on both; each number is the median of the
repeats. For each rate: p50 / p99 / p99.9 latency, throughput, goodput (answers within 100 ms per second)
and the share shed (503 or error, over all repeats). Summary: each system's largest offered rate whose p99
stays under 100 ms with nothing shed in any repeat, and the ratio. The machine is the bottleneck on purpose:
the load generator runs on it too.

Writes results/serve_load.json and results/serve_load.png (p99 against offered load, both systems).

    flock -x /tmp/reflow-cpu.lock .venv/bin/python benchmarks/serve_load.py                    # cascade
    flock -x /tmp/reflow-cpu.lock .venv/bin/python benchmarks/serve_load.py --pipeline recommender
    flock -x /tmp/reflow-cpu.lock .venv/bin/python benchmarks/serve_load.py --quick
    .venv/bin/python benchmarks/serve_load.py --merge results/serve_load_cascade_a.json ... --tag _all
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
from serve_peers import (
    BODIES,
    SLO_MS,
    LoadResult,
    as_dict,
    free_port,
    open_loop,
    ray_serve,
    reflow_server,
    warm,
)
from tqdm import tqdm

RATES = {"cascade": [25, 50, 100, 150, 200, 300, 400], "recommender": [50, 100, 200, 300, 400, 600, 800]}


def sweep(servers: dict[str, str], bodies: list[bytes], ctype: str, rates: list[float], seconds: float,
          repeats: int, bar: Any) -> dict[str, list[LoadResult]]:
    """Both systems up at once; for each repeat, each rate, both systems in turn (the order alternates), so
    that a change in the machine's load falls on both. Each (system, rate) is the median of its repeats."""
    for url in servers.values():
        warm(url, bodies, ctype)
    runs: dict[tuple[str, float], list[LoadResult]] = {}
    for rep in range(repeats):
        for rate in rates:
            order = list(servers) if rep % 2 == 0 else list(reversed(servers))
            for system in order:
                r = open_loop(system, servers[system], bodies, ctype, rate, seconds, seed=int(rate) + rep)
                runs.setdefault((system, rate), []).append(r)
                bar.update(1)
                bar.set_postfix_str(f"{system} {rate:g}/s p99 {r.p99_ms:.0f} ms")
    return {system: [median_of(runs[system, rate]) for rate in rates] for system in servers}


def median_of(runs: list[LoadResult]) -> LoadResult:
    """Each field's median over the repeats (counts summed, seconds too, so rates stay per second)."""
    med = lambda f: float(np.median([getattr(r, f) for r in runs]))  # noqa: E731
    first = runs[0]
    return LoadResult(first.system, first.offered, sum(r.sent for r in runs), sum(r.ok for r in runs),
                      sum(r.shed for r in runs), sum(r.errors for r in runs), sum(r.seconds for r in runs),
                      med("p50_ms"), med("p99_ms"), med("p999_ms"), med("goodput"))


def best_rate(results: list[LoadResult]) -> float:
    """The largest offered rate whose p99 stayed under the SLO with nothing shed."""
    ok = [r.offered for r in results if r.ok and r.p99_ms < SLO_MS and r.shed + r.errors == 0]
    return max(ok, default=0.0)


def plot(results: dict[str, list[LoadResult]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 2, figsize=(10, 4))
    for (system, rows), color in zip(results.items(), ("tab:blue", "tab:green", "tab:red"), strict=False):
        x = [r.offered for r in rows]
        ax[0].plot(x, [r.p99_ms for r in rows], marker="o", color=color, label=f"{system} p99")
        ax[0].plot(x, [r.p50_ms for r in rows], marker=".", linestyle="--", color=color,
                   label=f"{system} p50")
        ax[1].plot(x, [r.throughput for r in rows], marker="o", color=color, label=system)
    ax[0].axhline(SLO_MS, color="grey", linewidth=0.8)
    ax[0].set_yscale("log")
    ax[0].set_xlabel("offered load (requests/s)")
    ax[0].set_ylabel("latency (ms)")
    ax[0].legend()
    ax[1].set_xlabel("offered load (requests/s)")
    ax[1].set_ylabel("answered (requests/s)")
    ax[1].legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def report(pipeline: str, rates: list[float], results: dict[str, list[LoadResult]], header: str) -> None:
    """The table, the summary, and each system's largest rate under the SLO."""
    print(f"\n{pipeline}: {header}")
    print(f"{'offered/s':>9} {'system':>10} {'answered/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'p99.9 ms':>9} "
          f"{'goodput/s':>9} {'shed':>6}")
    for i, rate in enumerate(rates):
        for system, rows in results.items():
            r = rows[i]
            shed = (r.shed + r.errors) / max(1, r.sent)
            print(f"{rate:>9g} {system:>10} {r.throughput:>10.1f} {r.p50_ms:>8.1f} {r.p99_ms:>8.1f} "
                  f"{r.p999_ms:>9.1f} {r.goodput:>9.1f} {shed:>6.1%}")
    best = {s: best_rate(rows) for s, rows in results.items()}
    ratio = best["reflow"] / best["ray serve"] if best["ray serve"] else math.inf
    print(f"largest offered rate with p99 < {SLO_MS:g} ms: reflow {best['reflow']:g}/s, ray serve "
          f"{best['ray serve']:g}/s ({ratio:.2f}x)")
    lower = [rows_r.p99_ms < rows_s.p99_ms for rows_r, rows_s in zip(results["reflow"], results["ray serve"],
                                                                      strict=True)]
    print(f"reflow's p99 lower at {sum(lower)} of {len(lower)} rates")


def merge(paths: list[Path]) -> tuple[str, list[float], dict[str, list[LoadResult]]]:
    """The results of several runs (each a part of the rates, e.g. split to keep each run short) as one."""
    by_rate: dict[str, dict[float, LoadResult]] = {}
    pipeline = ""
    for path in paths:
        data = json.loads(path.read_text())
        pipeline = data["pipeline"]
        for system, rows in data["results"].items():
            for row in rows:
                row.pop("throughput", None)
                by_rate.setdefault(system, {})[row["offered"]] = LoadResult(**row)
    rates = sorted(next(iter(by_rate.values())))
    return pipeline, rates, {s: [rows[r] for r in rates] for s, rows in by_rate.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--pipeline", choices=sorted(RATES), default="cascade")
    p.add_argument("--seconds", type=float, default=10.0, help="seconds of load per rate")
    p.add_argument("--rates", type=float, nargs="*", help="offered rates (requests/s)")
    p.add_argument("--ray-replicas", type=int, default=1, help="replicas per Ray Serve deployment")
    p.add_argument("--repeats", type=int, default=3, help="interleaved repeats of each (system, rate)")
    p.add_argument("--quick", action="store_true", help="three rates, 3 s each, one repeat")
    p.add_argument("--tag", default="", help="suffix of the result files (one per part of a split run)")
    p.add_argument("--merge", type=Path, nargs="*",
                   help="no load: merge these result files (parts of a split run) into one table and plot")
    args = p.parse_args()
    out = Path("results")
    out.mkdir(exist_ok=True)
    if args.merge:
        pipeline, rates, results = merge(args.merge)
        report(pipeline, rates, results, f"merged from {', '.join(str(m) for m in args.merge)}")
        name = f"serve_load_{pipeline}{args.tag}"
    else:
        rates = args.rates or RATES[args.pipeline]
        seconds = args.seconds
        if args.quick:
            rates, seconds, args.repeats = rates[1::3], 3.0, 1
        bodies, ctype = BODIES[args.pipeline]()
        with tqdm(total=2 * len(rates) * args.repeats, desc=f"serve_load {args.pipeline}") as bar, \
                reflow_server(args.pipeline, workers=2) as reflow_url, \
                ray_serve(args.pipeline, free_port(), replicas=args.ray_replicas) as ray_url:
            results = sweep({"reflow": reflow_url, "ray serve": ray_url}, bodies, ctype, rates, seconds,
                            args.repeats, bar)
        pipeline = args.pipeline
        report(pipeline, rates, results, f"open-loop Poisson load, {seconds:g} s per rate, median of "
               f"{args.repeats} interleaved repeats (both servers up throughout), 2-core VM")
        name = f"serve_load_{pipeline}{args.tag}"
        best = {s: best_rate(rows) for s, rows in results.items()}
        (out / f"{name}.json").write_text(json.dumps(
            {"pipeline": pipeline, "seconds": seconds, "slo_ms": SLO_MS, "best_rate": best,
             "results": {s: [as_dict(r) for r in rows] for s, rows in results.items()}}, indent=1))
    plot(results, out / f"{name}.png", f"{pipeline}: latency and throughput against offered load (2-core VM)")
    print(f"wrote results/{name}.json and .png" if not args.merge else f"wrote results/{name}.png")


if __name__ == "__main__":
    main()
