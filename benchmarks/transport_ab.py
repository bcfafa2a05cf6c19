"""Claim: a change to the transport makes a round trip faster (or not), against a base revision, in one run.

On a VM whose speed moves by 2x within minutes, two separate benchmark runs cannot show a 10-20% change. This
script loads the base revision's ``reflow`` (``git archive REV src/reflow``) as a second package,
``reflow_base``, beside the working tree's, starts an echo child process for each (the same echo as
``transport_latency.py``: ``ch.send(ch.recv())``) and alternates blocks of round trips between the two, so
both see the same host minute by minute. Per payload it reports the median over blocks of each block's
median round trip, for the base and for the working tree, and the median of their per-block ratio; the
bound is two in-process memcpys of 1 MB, timed at the end.

    flock /tmp/reflow-bench.lock .venv/bin/python benchmarks/transport_ab.py --base HEAD~3 [--blocks 10]
        [--sizes 64B,128KB,1MB] [--kinds array,dict] [--cpus 0,1] [--quick]

``--cpus A,B`` pins this process to CPU A and the echoes to CPU B (``0,0``: all on one CPU). Unpinned, the
kernel may run sender and echo on one CPU for a while (a unix socket wakes its reader as a *sync* wake-up,
which places it next to its waker), and a round trip then costs up to 1.6x as much on the 2-core VM.

Writes results/transport_ab.json.
"""

from __future__ import annotations

import argparse
import importlib
import json
import multiprocessing as mp
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import transport_peers as tp
from tqdm import tqdm
from transport_latency import label, memcpy_samples, payload

CTX = mp.get_context("spawn")
SIZES = {"64B": 64, "4KB": 4 << 10, "128KB": 128 << 10, "1MB": 1 << 20, "16MB": 16 << 20}
ROUNDS = 50  # round trips per block (after one warm-up)


def export_base(rev: str, into: Path) -> Path:
    """The base revision's ``reflow`` as package ``reflow_base`` under ``into``; returns ``into``."""
    root = Path(__file__).resolve().parent.parent
    archive = subprocess.run(["git", "-C", str(root), "archive", rev, "src/reflow"], check=True,
                             capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    (into / "src" / "reflow").rename(into / "reflow_base")
    for path in (into / "reflow_base").rglob("*.py"):
        text = re.sub(r"\bfrom reflow(\.| import)", r"from reflow_base\1", path.read_text())
        text = re.sub(r"\bimport reflow\.", "import reflow_base.", text)
        # its shared-memory segments must not collide with the working tree's (same pid, own counter)
        text = text.replace('PREFIX = "reflow-"', 'PREFIX = "reflow-base-"')
        path.write_text(text)
    return into


def echo(path: str, package: str, name: str, cpu: int | None) -> None:
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    sys.path.insert(0, path)
    tp.reflow_echo(name, importlib.import_module(f"{package}.transport").Channel)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", default="HEAD", help="the git revision to compare the working tree with "
                    "(default HEAD: with a clean tree, a check that the harness favours neither side)")
    ap.add_argument("--blocks", type=int, default=10, help="alternating blocks per side (default 10)")
    ap.add_argument("--quick", action="store_true", help="2 blocks of 64 B and 1 MB arrays")
    ap.add_argument("--sizes", default="64B,128KB,1MB", help=f"comma-separated subset of {','.join(SIZES)}")
    ap.add_argument("--kinds", default="array,dict", help="payload kinds: array, dict or both")
    ap.add_argument("--cpus", help="A,B: pin this process to CPU A and the echo processes to CPU B")
    ap.add_argument("--out", default="results/transport_ab.json")
    args = ap.parse_args()
    cpus = [int(c) for c in args.cpus.split(",")] if args.cpus else [None, None]
    if len(cpus) != 2 or any(c is not None and c not in os.sched_getaffinity(0) for c in cpus):
        ap.error(f"--cpus takes two CPUs this process may use ({sorted(os.sched_getaffinity(0))}), "
                 f"got {args.cpus!r}")
    if cpus[0] is not None:
        os.sched_setaffinity(0, {cpus[0]})
    unknown = [s for s in args.sizes.split(",") if s not in SIZES]
    if unknown:
        ap.error(f"unknown size(s) {unknown}: choose from {', '.join(SIZES)}")
    if args.quick:
        args.blocks, args.sizes, args.kinds = 2, "64B,1MB", "array"
    cases = [(kind, SIZES[s]) for kind in args.kinds.split(",") for s in args.sizes.split(",")]
    with tempfile.TemporaryDirectory(prefix="reflow-ab-") as tmp:
        path = str(export_base(args.base, Path(tmp)))
        sys.path.insert(0, path)
        sides = {"base": "reflow_base", "new": "reflow"}
        procs, chans = [], {}
        try:
            for side, package in sides.items():
                name = f"ab-{side}-{os.getpid()}"
                proc = CTX.Process(target=echo, args=(path, package, name, cpus[1]))
                proc.start()
                procs.append(proc)
                channel = importlib.import_module(f"{package}.transport").Channel
                chans[side] = channel(name, "a", store_bytes=320 << 20, timeout=60).connect(30)
            times = run(chans, cases, args.blocks)
        finally:
            for ch in chans.values():
                ch.send("stop")
            for proc in procs:
                proc.join(30)
            for ch in chans.values():
                ch.close()
    bound = 2 * statistics.median(memcpy_samples(1 << 20, 300))
    rows = report(times, cases, bound, args.base)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"base": args.base, "blocks": args.blocks, "cpus": args.cpus,
                               "bound_1mb_s": bound, "rows": rows}, indent=1))
    print(f"wrote {out}")


Times = dict[tuple[str, str, int], list[float]]  # (side, kind, size) -> block medians in seconds


def run(chans: dict[str, Any], cases: list[tuple[str, int]], blocks: int) -> Times:
    """Block medians per (side, kind, size), the sides taking turns (which goes first alternates too)."""
    times: Times = {}
    order = list(chans)
    for block in tqdm(range(blocks), desc="blocks"):
        for side in order if block % 2 else order[::-1]:
            ch = chans[side]
            for kind, size in cases:
                msg = payload(kind, size)
                ch.send(msg)
                ch.recv()
                samples = []
                for _ in range(ROUNDS):
                    t0 = time.perf_counter()
                    ch.send(msg)
                    back = ch.recv()
                    del back
                    samples.append(time.perf_counter() - t0)
                times.setdefault((side, kind, size), []).append(statistics.median(samples))
    return times


def report(times: Times, cases: list[tuple[str, int]], bound: float,
           base: str) -> list[dict[str, Any]]:
    print(f"\nround trip p50 in us (median of block medians, range over blocks); bound = two 1 MB memcpys "
          f"= {bound * 1e6:.1f} us; base = {base}")
    print(f"{'payload':>12} {'base':>18} {'working tree':>18} {'new/base':>9} {'new x bound':>12}")
    rows = []
    for kind, size in cases:
        old, new = times["base", kind, size], times["new", kind, size]
        ratio = statistics.median(b / a for a, b in zip(old, new, strict=True))
        x_bound = statistics.median(new) / bound if size == 1 << 20 else None
        print(f"{kind + ' ' + label(size):>12} {statistics.median(old) * 1e6:7.1f} ({min(old) * 1e6:.0f}-"
              f"{max(old) * 1e6:.0f}) {statistics.median(new) * 1e6:7.1f} ({min(new) * 1e6:.0f}-"
              f"{max(new) * 1e6:.0f}) {ratio:9.3f} {'' if x_bound is None else f'{x_bound:12.2f}'}")
        rows.append({"kind": kind, "size": size, "base_s": old, "new_s": new, "new_over_base": ratio})
    return rows


if __name__ == "__main__":
    main()
