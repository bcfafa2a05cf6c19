"""Claim: reflow moves a message between two processes at near memcpy speed, and small ones in microseconds.

Round-trip latency (p50, p99) and throughput between two processes, for payloads of 64 B, 4 KB, 1 MB, 16 MB
and 64 MB, as one numpy array and as a dict of four arrays. A child process echoes every message back, so one
round trip moves the payload twice; the bound printed next to each size is two memcpys of it (one per
direction, the median of copies timed in every repeat round, so it sees the same host load as the peers),
the least any transport that hands the receiver its own copy must pay (reflow's echo forwards what it
received instead, so its round trip copies once; ``reflow loan`` copies once per direction). Peers, in the
same run, all with the same echo child: ``reflow loan`` (reflow's loan API: the sender writes each payload
into a block loaned from its store and sends it without a copy, the echo copies into a loan of its own;
arrays only),
``multiprocessing.Queue``, ``multiprocessing.Pipe``, pyzmq over ``ipc://`` (multipart with pickle-5
out-of-band buffers, zero-copy frames: zmq at its best), Ray (``ray.put`` + an actor method that returns the
value), Cyclone DDS, Eclipse Zenoh and iceoryx2 (see ``transport_peers`` for how each is driven and why).
Peers are interleaved in every repeat; the table reports medians. The environment's ``GLIBC_TUNABLES`` is
recorded with the results: ``glibc.cpu.x86_non_temporal_threshold=0x40000`` makes every peer's large copies
bypass the cache (see ``transport_cold_cache.py`` for why that matters at 1 MB).

    flock /tmp/reflow-bench.lock .venv/bin/python benchmarks/transport_latency.py [--quick] [--peers a,b,...]
        [--sizes 1MB,16MB,64MB] [--kinds array]

Writes results/transport_latency.json and results/transport_latency.png (copy to docs/img/ for the docs).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import transport_peers as tp
from tqdm import tqdm

SIZES = [64, 4 << 10, 1 << 20, 16 << 20, 64 << 20]


def label(n: int) -> str:
    return f"{n >> 20} MB" if n >= 1 << 20 else f"{n >> 10} KB" if n >= 1 << 10 else f"{n} B"


def payload(kind: str, size: int) -> Any:
    rng = np.random.default_rng(size)
    if kind == "array":
        return rng.integers(0, 255, size, dtype=np.uint8)
    return {k: rng.integers(0, 255, size // 4, dtype=np.uint8) for k in "abcd"}


def memcpy_samples(size: int, reps: int) -> list[float]:
    """Seconds for ``reps`` cache-warm in-process copies of ``size`` bytes."""
    src = np.ones(size, np.uint8)
    dst = np.empty_like(src)
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        np.copyto(dst, src)
        times.append(time.perf_counter() - t0)
    return times


WARM_S = 0.01  # each peer's turn starts with this long of round trips, not timed


def warm(p: Any, msg: Any) -> None:
    """Round trips for ``WARM_S`` seconds (at least one) before a peer's timed turn: its echo may have slept
    since its last turn, and the kernel places a process it wakes next to its waker for a few milliseconds
    (a unix socket wakes its reader as a *sync* wake-up), so the first round trips of a turn can run with
    both processes on one CPU. Every peer gets the same warm-up."""
    end = time.perf_counter() + WARM_S
    p.roundtrip(msg)
    while time.perf_counter() < end:
        p.roundtrip(msg)


def rounds_for(size: int, quick: bool) -> int:
    n = 400 if size <= 4096 else 30 if size <= 1 << 20 else 8 if size <= 16 << 20 else 4
    return max(2, n // 4) if quick else n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer repeats, sizes up to 16 MB")
    ap.add_argument("--peers", default=",".join(tp.ALL), help="comma-separated subset of " + ",".join(tp.ALL))
    ap.add_argument("--repeats", type=int, default=5, help="interleaved repeats per size (default 5)")
    names = ",".join(label(n).replace(" ", "") for n in SIZES)
    ap.add_argument("--sizes", help=f"comma-separated subset of {names} (default: all; --quick: up to 16MB)")
    ap.add_argument("--kinds", default="array,dict", help="payload kinds to run: array, dict or both")
    ap.add_argument("--out", default="results/transport_latency.json")
    args = ap.parse_args()
    sizes = SIZES[:4] if args.quick else SIZES
    if args.sizes:
        by_label = {label(n).replace(" ", ""): n for n in SIZES}
        sizes = [by_label[x.strip().replace(" ", "")] for x in args.sizes.split(",")]
    repeats = 2 if args.quick else args.repeats
    shm_before = tp.shm_entries()
    peers, skipped = tp.start_peers(args.peers.split(","))
    rows: list[dict[str, Any]] = []
    try:
        for kind in args.kinds.split(","):
            for size in sizes:
                msg = payload(kind, size)
                n = rounds_for(size, args.quick)
                samples: dict[str, list[float]] = {p.name: [] for p in peers}
                copies: list[float] = []  # the bound is sampled in every round too, so it sees the same host
                failed: dict[str, str] = {}
                for _ in tqdm(range(repeats), desc=f"{kind} {label(size)}", leave=False):
                    copies += memcpy_samples(size, 10)
                    for p in peers:
                        if p.name in failed:
                            continue
                        if kind not in p.kinds:
                            failed[p.name] = f"{kind} payloads not run ({', '.join(p.kinds)} only)"
                            continue
                        if size > p.max_size:
                            failed[p.name] = f"not run above {label(p.max_size)} (too slow; transport_peers)"
                            continue
                        try:
                            warm(p, msg)
                            samples[p.name].extend(p.roundtrip(msg) for _ in range(n))
                            p.pause()
                        except Exception as exc:  # a peer that cannot carry this payload: report, go on
                            failed[p.name] = f"{type(exc).__name__}: {exc}"[:200]
                bound = 2 * statistics.median(copies)
                for p in peers:
                    s = np.array(samples[p.name])
                    row: dict[str, Any] = {"kind": kind, "size": size, "peer": p.name, "bound_s": bound}
                    if p.name in failed or not len(s):
                        row["error"] = failed.get(p.name, "no samples")
                    else:
                        p50 = float(np.percentile(s, 50))
                        row.update(p50_s=p50, p99_s=float(np.percentile(s, 99)),
                                   mb_per_s=2 * size / p50 / 1e6, samples=len(s))
                    rows.append(row)
    finally:
        for p in peers:
            p.close()
        tp.remove_foreign_shm(shm_before)
    report(rows, skipped)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": platform.platform(), "cpus": tp.cpu_count(),
                               "glibc_tunables": os.environ.get("GLIBC_TUNABLES", ""), "rows": rows,
                               "skipped": skipped}, indent=1))
    plot(rows, out.with_suffix(".png"))
    print(f"wrote {out} and {out.with_suffix('.png')}")


def report(rows: list[dict[str, Any]], skipped: dict[str, str]) -> None:
    print(f"\n{'payload':>14} {'peer':>11} {'p50 us':>10} {'p99 us':>10} {'MB/s':>8} {'x bound':>8} "
          f"{'x reflow':>9}")
    ref = {(r["kind"], r["size"]): r.get("p50_s") for r in rows if r["peer"] == "reflow"}
    for r in rows:
        name = f"{r['kind']} {label(r['size'])}"
        if "error" in r:
            print(f"{name:>14} {r['peer']:>11}  failed: {r['error'][:60]}")
            continue
        mine = ref.get((r["kind"], r["size"]))
        vs = f"{r['p50_s'] / mine:9.2f}" if mine else f"{'-':>9}"
        print(f"{name:>14} {r['peer']:>11} {r['p50_s'] * 1e6:10.1f} {r['p99_s'] * 1e6:10.1f} "
              f"{r['mb_per_s']:8.0f} {r['p50_s'] / r['bound_s']:8.2f} {vs}")
    for k, why in skipped.items():
        print(f"skipped {k}: {why}")


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kinds = list(dict.fromkeys(r["kind"] for r in rows))
    peers = list(dict.fromkeys(r["peer"] for r in rows))
    colors = {peer: plt.get_cmap("tab10")(i % 10) for i, peer in enumerate(peers)}  # same in every panel
    fig, axes = plt.subplots(1, len(kinds), figsize=(6 * len(kinds), 4.5), sharey=True, squeeze=False)
    for ax, kind in zip(axes[0], kinds, strict=True):
        mine = [r for r in rows if r["kind"] == kind and "p50_s" in r]
        for peer in dict.fromkeys(r["peer"] for r in mine):
            pts = [(r["size"], r["p50_s"] * 1e6) for r in mine if r["peer"] == peer]
            ax.plot(*zip(*pts, strict=True), marker="o", label=peer, color=colors[peer],
                    lw=2.5 if peer == "reflow" else 1)
        bounds = sorted({(r["size"], r["bound_s"] * 1e6) for r in rows if r["kind"] == kind})
        ax.plot(*zip(*bounds, strict=True), "k--", label="2x memcpy")
        ax.set(xscale="log", yscale="log", xlabel="payload bytes", title=f"round trip, {kind} payload")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)  # each panel names its own lines (a peer may be missing from one)
    axes[0][0].set_ylabel("p50 round-trip latency (us)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
