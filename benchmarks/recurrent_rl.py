"""Recurrent tensors against the same algorithms hand-written in eager PyTorch, with torch.compile, and Tempo.

Claim: a recurrent-tensor program, compiled (whole-program passes, a loop schedule, generated code), trains
faster per iteration than the same algorithm written CleanRL-style in eager PyTorch or with torch.compile,
and holds less memory.

Parts (each system and configuration runs in its own fresh process, so peak RSS is its own):
- ``sweep``: REINFORCE (Monte-Carlo) on the synthetic env (3x4x4 observations, episodes that run the whole
  horizon, as Tempo's), episode length T in 100..10,000, B envs in {4, 16}: seconds per iteration (median
  after a warm-up iteration) and peak RSS.
- ``images``: the same with image observations 3x64x64 .. 3x256x256 (T = 100, B = 4).
- ``ppo``: PPO on CartPole-v1 at full scale, until the mean return of 5 consecutive iterations passes 475:
  iterations and seconds, and seconds per iteration beside eager PyTorch's.
- ``tempo``: Tempo's own REINFORCE program (lsds/Tempo, repro/sec7_4_algo_specific_sched) on its trivial env,
  where Tempo is installed (see ``--tempo-python``; skipped with the reason otherwise).

Usage: flock -x /tmp/reflow-cpu.lock .venv/bin/python benchmarks/recurrent_rl.py [--quick] [--part P ...]
    [--repeats R] [--systems S ...] [--lengths T ...] [--envs B ...] [--sides N ...] [--out NAME]
Each configuration runs ``--repeats`` interleaved rounds (reflow, eager, compile, reflow, ...), each system
in a fresh process; the ratio is of medians over all repeats' iterations after their first. Writes
results/NAME.json and results/NAME.png (NAME: ``--out``, default recurrent_rl).

Tempo is not on PyPI (the PyPI project named ``tempo`` is OpenStack's Tempo Service, unrelated; lsds/Tempo's
pyproject says ``upload_to_pypi = false``), so it needs a checkout of github.com/lsds/Tempo; where there is
none (as on the machine the recorded numbers come from: package registries only) the part is skipped and says
so. With a checkout, Tempo goes in a venv of its own (it needs gymnasium 0.29, an older islpy and JAX):
    python3.11 -m venv /tmp/tempo-venv
    echo $PWD/.venv/lib/python3.11/site-packages > /tmp/tempo-venv/lib/python3.11/site-packages/r.pth
    /tmp/tempo-venv/bin/pip install -c constraints.txt optree pulp networkx graphviz sympy psutil gym \\
        "gymnasium==0.29.1" "islpy==2024.2" "jax[cpu]==0.4.38"
    /tmp/tempo-venv/bin/pip install --no-deps -e <a checkout of github.com/lsds/Tempo>
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "results"
SYSTEMS = ("reflow", "eager", "compile")


def _rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def one(spec: dict[str, Any]) -> dict[str, Any]:
    """Run one system on one configuration (in this process) and measure it."""
    import torch

    torch.set_num_threads(1)
    sys.path[:0] = [str(ROOT / "examples" / "recurrent"), str(ROOT / "benchmarks")]
    import recurrent_peers

    from reflow.recurrent.synthetic import ENV_ID

    env_id = ENV_ID if spec["env"] == "synthetic" else spec["env"]
    kw = {"obs_shape": tuple(spec["obs"])} if spec["env"] == "synthetic" else {}
    base = _rss()
    if spec["algo"] == "reinforce":
        B, T, iters = spec["B"], spec["T"], spec["I"]
        if spec["system"] == "reflow":
            import reinforce

            from reflow.recurrent import udf

            stamps: list[float] = []
            write = udf.Logger.write

            def stamped(self: Any, *a: Any) -> Any:
                stamps.append(time.perf_counter())
                return write(self, *a)

            udf.Logger.write = stamped  # type: ignore[method-assign]
            prog = reinforce.build(env_id=env_id, hidden=64, **kw).compile(B=B, T=T, I=iters)
            start = time.perf_counter()
            result = prog.run()
            seconds = [b - a for a, b in zip([start, *stamps], stamps, strict=False)]
            out = {"seconds": seconds, "returns": [r["episode_return"] for r in result.logs],
                   "held_bytes": result.stats["peak_tracked_bytes"]}
        else:
            compiled = spec["system"] == "compile"
            out = recurrent_peers.reinforce(env_id, B, T, iters, hidden=64, compiled=compiled, **kw)
    else:
        if spec["system"] == "reflow":
            import ppo

            from reflow.recurrent import udf

            stamps = []
            write = udf.Logger.write

            def stamped(self: Any, *a: Any) -> Any:
                stamps.append(time.perf_counter())
                return write(self, *a)

            udf.Logger.write = stamped  # type: ignore[method-assign]
            prog = ppo.build(env_id=env_id).compile(B=spec["B"], T=spec["T"], K=spec["K"], I=spec["I"])
            start = time.perf_counter()
            result = prog.run()
            seconds = [b - a for a, b in zip([start, *stamps], stamps, strict=False)]
            out = {"seconds": seconds, "returns": [r["episode_return"] for r in result.logs],
                   "held_bytes": result.stats["peak_tracked_bytes"]}
        else:
            out = recurrent_peers.ppo(env_id, spec["B"], spec["T"], spec["K"], spec["I"],
                                      compiled=spec["system"] == "compile")
    out.update(peak_rss=_rss(), base_rss=base)
    return out


TIMEOUT = [1800.0]  # seconds one system's process may run (--timeout)


def measure(spec: dict[str, Any], timeout: float | None = None) -> dict[str, Any]:
    """``one(spec)`` in a fresh process (its own peak RSS). A process past its time is stopped with SIGTERM
    (so its env workers are shut down and their semaphores unlinked), then killed if it does not exit."""
    timeout = TIMEOUT[0] if timeout is None else timeout
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    with subprocess.Popen([sys.executable, __file__, "--one", json.dumps(spec)], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, env=env) as proc:
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.terminate()
            try:
                proc.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()
            return {"error": f"timed out after {timeout:.0f} s"}
    if proc.returncode != 0:
        lines = err.strip().splitlines()
        return {"error": lines[-1] if lines else f"exit {proc.returncode}"}
    return dict(json.loads(out.strip().splitlines()[-1]))


def per_iteration(runs: list[dict[str, Any]]) -> float:
    """Median seconds per iteration over every repeat's iterations after its first (which pays for compiling
    and warming up)."""
    s = [x for r in runs for x in (r["seconds"][1:] or r["seconds"])]
    return float(statistics.median(s))


def row(label: str, results: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """One configuration: per system, the median over interleaved repeats (each a fresh process)."""
    out: dict[str, Any] = {"config": label}
    for system, runs in results.items():
        bad = [r for r in runs if "error" in r]
        if bad:
            out[system] = {"error": bad[0]["error"]}
            continue
        out[system] = {"s_per_iter": per_iteration(runs), "repeats": len(runs),
                       "first_iter_s": statistics.median(r["seconds"][0] for r in runs),
                       "peak_rss_mib": statistics.median(r["peak_rss"] for r in runs) / 2**20,
                       "rss_above_start_mib": statistics.median(r["peak_rss"] - r["base_rss"] for r in runs)
                       / 2**20, "seconds": [r["seconds"] for r in runs], "returns": runs[0]["returns"]}
        if "held_bytes" in runs[0]:
            out[system]["held_mib"] = runs[0]["held_bytes"] / 2**20
    ref = out.get("reflow", {})
    for system in results:
        if system != "reflow" and "s_per_iter" in out.get(system, {}) and "s_per_iter" in ref:
            out[system]["reflow_speedup"] = out[system]["s_per_iter"] / ref["s_per_iter"]
            out[system]["rss_ratio"] = out[system]["rss_above_start_mib"] / ref["rss_above_start_mib"]
    return out


def interleaved(spec: dict[str, Any], systems: tuple[str, ...],
                repeats: int) -> dict[str, list[dict[str, Any]]]:
    """``repeats`` rounds, each running every system once (a fresh process each) in turn."""
    res: dict[str, list[dict[str, Any]]] = {s: [] for s in systems}
    for _ in range(repeats):
        for s in systems:
            res[s].append(measure({**spec, "system": s}))
            for path in PARTIAL:  # each process's raw result too, in case the run is cut short
                with path.open("a") as f:
                    f.write(json.dumps({"spec": {**spec, "system": s}, "raw": res[s][-1]}) + "\n")
    return res


PARTIAL: list[Path] = []  # where print_row also appends each row (a run cut short keeps what it measured)


def print_row(r: dict[str, Any]) -> None:
    for path in PARTIAL:
        with path.open("a") as f:
            f.write(json.dumps(r) + "\n")
    cells = [f"{r['config']:<34}"]
    for system in (*SYSTEMS, "tempo"):
        v = r.get(system)
        if v is None:
            continue
        if "error" in v:
            cells.append(f"{system}: {v['error'][:40]}")
            continue
        ratio = f" (x{v['reflow_speedup']:.2f})" if "reflow_speedup" in v else ""
        cells.append(f"{system} {v['s_per_iter']:.3f}s{ratio} {v['rss_above_start_mib']:.0f}MiB")
    print("  ".join(cells), flush=True)


def sweep(args: argparse.Namespace) -> list[dict[str, Any]]:
    rows = []
    for B in args.envs:
        for T in args.lengths:
            iters = 3 if T <= 1000 else 2
            spec = {"algo": "reinforce", "env": "synthetic", "obs": [3, 4, 4], "B": B, "T": T, "I": iters}
            rows.append(row(f"reinforce T={T} B={B}", interleaved(spec, args.systems, args.repeats)))
            print_row(rows[-1])
    return rows


def images(args: argparse.Namespace) -> list[dict[str, Any]]:
    rows = []
    for side in args.sides:
        spec = {"algo": "reinforce", "env": "synthetic", "obs": [3, side, side], "B": 4,
                "T": 50 if args.quick else 100, "I": 3}
        rows.append(row(f"reinforce 3x{side}x{side} T={spec['T']} B=4",
                        interleaved(spec, args.systems, args.repeats)))
        print_row(rows[-1])
    return rows


def ppo_learns(args: argparse.Namespace) -> list[dict[str, Any]]:
    spec = {"algo": "ppo", "env": "CartPole-v1", "B": 8, "T": 128, "K": 8, "I": 12 if args.quick else 150}
    res = {"reflow": [measure({**spec, "system": "reflow"})],
           "eager": [measure({**spec, "system": "eager", "I": args.peer_iterations or spec["I"]})]}
    r = row("ppo CartPole-v1 B=8 T=128 K=8", res)
    for system, runs in res.items():
        out = runs[0]
        if "error" in out:
            continue
        rets = out["returns"]
        hit = next((k + 5 for k in range(len(rets) - 4) if min(rets[k:k + 5]) >= 475 or
                    statistics.mean(rets[k:k + 5]) >= 475), None)
        best = max(statistics.mean(rets[k:k + 5]) for k in range(max(1, len(rets) - 4)))
        r[system].update(reached_475_at_iteration=hit, best_5_mean=best,
                         seconds_to_475=sum(out["seconds"][:hit]) if hit else None)
    print_row(r)
    for system in res:
        v = r.get(system, {})
        if "best_5_mean" in v:
            print(f"  {system}: best mean of 5 iterations {v['best_5_mean']:.0f}, 475 reached at iteration "
                  f"{v['reached_475_at_iteration']} ({v['seconds_to_475']} s)")
    return [r]


def tempo(args: argparse.Namespace) -> list[dict[str, Any]]:
    py = Path(args.tempo_python)
    if not py.exists():
        print(f"tempo: skipped: no {py} (lsds/Tempo is not on PyPI; with a checkout of "
              "github.com/lsds/Tempo, install it as this module's docstring says)")
        return [{"config": "tempo", "tempo": {"error": f"not installed ({py})"}}]
    driver = ROOT / "benchmarks" / "recurrent_tempo.py"
    B, T, iters = 4, 20 if args.quick else 100, 3
    cmd = [str(py), str(driver), "--tempo-src", args.tempo_src, *map(str, (B, T, iters)), "mc",
           args.tempo_backend]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.tempo_timeout, check=False)
        last = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
        got = json.loads(last) if last.startswith("{") else {"error": (proc.stderr.strip().splitlines() or
                                                                     ["no output"])[-1]}
    except subprocess.TimeoutExpired:
        got = {"error": f"timed out after {args.tempo_timeout} s"}
    spec = {"algo": "reinforce", "env": "synthetic", "obs": [3, 4, 4], "B": B, "T": T, "I": iters}
    mine = measure({**spec, "system": "reflow"})
    runs = [mine]
    r = {"config": f"tempo's reinforce T={T} B={B}", "tempo": got, "reflow": mine}
    if "error" not in got and "error" not in mine:
        r["tempo_s_per_iter"] = statistics.median(got["per_iteration"][1:] or got["per_iteration"])
        r["reflow_s_per_iter"] = per_iteration(runs)
        print(f"tempo ({args.tempo_backend} backend): compile {got['compile_s']:.0f} s, "
              f"{r['tempo_s_per_iter']:.3f} s per iteration; reflow {r['reflow_s_per_iter']:.3f} s")
    else:
        print(f"tempo: {got.get('error') or mine.get('error')}")
    return [r]


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    sweep = [r for r in rows if r["config"].startswith("reinforce T=")]
    for B in sorted({int(r["config"].split("B=")[1]) for r in sweep}):
        pts = [r for r in sweep if r["config"].endswith(f"B={B}")]
        xs = [int(r["config"].split("T=")[1].split()[0]) for r in pts]
        for system, style in zip(SYSTEMS, ("-o", "--s", ":^"), strict=True):
            ys = [r[system].get("s_per_iter") if isinstance(r.get(system), dict) else None for r in pts]
            if any(y is not None for y in ys):
                ax.plot([x for x, y in zip(xs, ys, strict=True) if y], [y for y in ys if y], style,
                        label=f"{system} B={B}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("episode length T")
    ax.set_ylabel("seconds per iteration")
    ax.set_title("REINFORCE, synthetic env: recurrent tensors vs eager PyTorch")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--one":
        import signal

        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwind: env banks close their workers
        print(json.dumps(one(json.loads(sys.argv[2]))))
        return
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="small sizes (what make bench runs)")
    p.add_argument("--part", nargs="*", default=["sweep", "images", "ppo", "tempo"],
                   choices=["sweep", "images", "ppo", "tempo"])
    p.add_argument("--repeats", type=int, default=2,
                   help="interleaved rounds (a fresh process per system each)")
    p.add_argument("--systems", nargs="*", default=list(SYSTEMS), choices=SYSTEMS)
    p.add_argument("--lengths", nargs="*", type=int, help="episode lengths of the sweep (100 1000 10000)")
    p.add_argument("--envs", nargs="*", type=int, help="env counts of the sweep (4 16)")
    p.add_argument("--sides", nargs="*", type=int, help="image sides (64 128 256)")
    p.add_argument("--out", default="recurrent_rl", help="results/OUT.json (and .png)")
    p.add_argument("--peer-iterations", type=int, help="ppo: the eager peer's iterations (default: reflow's)")
    p.add_argument("--plot-from", nargs="*", help="only merge the rows of these results JSON files and plot "
                   "them into results/OUT.png")
    p.add_argument("--timeout", type=float, default=1800.0, help="seconds one system's process may run")
    p.add_argument("--tempo-python", default="/tmp/tempo-venv/bin/python")
    p.add_argument("--tempo-src", default="/tmp/tempo-src")
    p.add_argument("--tempo-backend", default="jax", choices=["jax", "torch"])
    p.add_argument("--tempo-timeout", type=float, default=1200.0)
    args = p.parse_args()
    args.systems = tuple(args.systems)
    TIMEOUT[0] = args.timeout
    args.lengths = args.lengths or ([100, 1000] if args.quick else [100, 1000, 10_000])
    args.envs = args.envs or ([4] if args.quick else [4, 16])
    args.sides = args.sides or ([64] if args.quick else [64, 128, 256])
    RESULTS.mkdir(exist_ok=True)
    if args.plot_from:
        merged = [r for f in args.plot_from for r in json.loads(Path(f).read_text())["rows"]]
        plot(merged, RESULTS / f"{args.out}.png")
        print(f"wrote {RESULTS / args.out}.png")
        return
    rows: list[dict[str, Any]] = []
    PARTIAL.append(RESULTS / f"{args.out}.partial.jsonl")
    print(f"recurrent_rl: {os.cpu_count()} cores; seconds per iteration (median after the first), "
          "peak RSS above the process's start; xN = that system's time / reflow's")
    for part, fn in (("sweep", sweep), ("images", images), ("ppo", ppo_learns)):
        if part in args.part:
            rows += fn(args)
    if "tempo" in args.part:
        rows += tempo(args)
    out = RESULTS / f"{args.out}.json"
    out.write_text(json.dumps({"quick": args.quick, "repeats": args.repeats, "rows": rows}, indent=1))
    if any(r["config"].startswith("reinforce T=") for r in rows):
        plot(rows, out.with_suffix(".png"))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
