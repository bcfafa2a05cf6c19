"""Peak memory against episode length for n-step learning: flat when learning runs behind acting.

Claim: with n-step returns, the compiled program can learn n - 1 steps behind acting (``stream``), so the
values it keeps do not grow with the episode length T; the default schedule (act for the whole episode, then
learn vectorized) and eager PyTorch (which keeps the autograd graph of the episode) grow linearly in T.

n-step REINFORCE (n = 8) on the synthetic env with 3x16x16 observations, B = 4 envs, T = 100 .. 10,000, one
iteration per fresh process: bytes the program holds in its stores (reflow's own count) and peak RSS above the
process's start (all three). Writes results/recurrent_memory.json and results/recurrent_memory.png.

Usage: flock -x /tmp/reflow-cpu.lock .venv/bin/python benchmarks/recurrent_memory.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "results"
OBS = (3, 16, 16)
SYSTEMS = ("reflow stream", "reflow default", "eager")


def one(system: str, T: int) -> dict[str, Any]:
    import torch

    torch.set_num_threads(1)
    sys.path[:0] = [str(ROOT / "examples" / "recurrent"), str(ROOT / "benchmarks")]
    from reflow.recurrent.synthetic import ENV_ID

    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    start = time.perf_counter()
    held = None
    if system == "eager":
        import recurrent_peers

        recurrent_peers.reinforce(ENV_ID, 4, T, 1, n=8, hidden=64, obs_shape=OBS)
    else:
        import reinforce

        prog = reinforce.build(n=8, env_id=ENV_ID, hidden=64, obs_shape=OBS).compile(
            B=4, T=T, I=1, stream=system == "reflow stream")
        held = prog.run().stats["peak_tracked_bytes"]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"rss_above_start": peak - base, "held": held, "seconds": time.perf_counter() - start}


def measure(system: str, T: int) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run([sys.executable, __file__, "--one", system, str(T)], capture_output=True, text=True,
                          env=env, check=False, timeout=1800)
    if proc.returncode != 0:
        return {"error": (proc.stderr.strip().splitlines() or ["?"])[-1]}
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--one":
        print(json.dumps(one(sys.argv[2], int(sys.argv[3]))))
        return
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--lengths", nargs="*", type=int, help="episode lengths (100 300 1000 3000 10000)")
    p.add_argument("--out", default="recurrent_memory", help="results/OUT.json and .png")
    p.add_argument("--plot-only", action="store_true", help="plot results/OUT.json again")
    args = p.parse_args()
    lengths: tuple[int, ...] = tuple(args.lengths or ((100, 300, 1000) if args.quick else
                                                      (100, 300, 1000, 3000, 10_000)))
    rows = [] if not args.plot_only else json.loads((RESULTS / f"{args.out}.json").read_text())["rows"]
    if args.plot_only:
        lengths = ()
    print(f"{'T':>6}  " + "  ".join(f"{s + ' held / RSS':>28}" for s in SYSTEMS))
    for T in lengths:
        r = {"T": T, **{s: measure(s, T) for s in SYSTEMS}}
        rows.append(r)
        cells = []
        for s in SYSTEMS:
            v = r[s]
            held = "" if v.get("held") is None else f"{v['held'] / 2**20:8.2f} MiB / "
            cells.append(f"{held}{v.get('rss_above_start', 0) / 2**20:7.1f} MiB" if "error" not in v
                         else v["error"][:28])
        print(f"{T:>6}  " + "  ".join(f"{c:>28}" for c in cells), flush=True)
        RESULTS.mkdir(exist_ok=True)  # after every length, so a run cut short keeps what it measured
        (RESULTS / f"{args.out}.json").write_text(json.dumps({"quick": args.quick, "obs": OBS,
                                                                  "rows": rows}, indent=1))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
    for s, style in zip(SYSTEMS, ("-o", "--s", ":^"), strict=True):
        ok = [r for r in rows if "error" not in r[s]]
        if s != "eager":
            a1.plot([r["T"] for r in ok], [r[s]["held"] / 2**20 for r in ok], style, label=s)
        a2.plot([r["T"] for r in ok], [r[s]["rss_above_start"] / 2**20 for r in ok], style, label=s)
    for ax, what in ((a1, "values held by the program (MiB)"), (a2, "peak RSS above start (MiB)")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("episode length T")
        ax.set_ylabel(what)
        ax.legend(fontsize=8)
    fig.suptitle("n-step REINFORCE (n=8), synthetic env 3x16x16, 4 envs")
    fig.tight_layout()
    fig.savefig(RESULTS / f"{args.out}.png", dpi=120)
    print(f"wrote {RESULTS / args.out}.json and .png")


if __name__ == "__main__":
    main()
