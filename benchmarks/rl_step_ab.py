"""A/B of two versions of reflow on the per-env-step cost of training: the same runs, two source trees.

``rl_step_cost.py`` compares reflow with Stable-Baselines3; its per-repeat spread (about +-10% on the shared
VM) hides changes of a few percent. This script compares two checkouts of reflow directly: each measurement
is a fresh child process that imports reflow from tree A or tree B (``PYTHONPATH``), warms up with a
256-step run, then times one ``reflow.rl.train`` run of a fixed budget (presets, seed 0, no target, no
evaluations) in CPU seconds per env step. Children alternate A, B / B, A per repeat; the result per task is
the ratio of medians B / A (< 1: B cheaper) and the range of per-repeat ratios.

    git archive BASE src | tar -x -C /tmp/a; git archive HEAD src | tar -x -C /tmp/b
    flock /tmp/reflow-turnstile.lock flock -x /tmp/reflow-cpu.lock .venv/bin/python benchmarks/rl_step_ab.py \
        /tmp/a/src /tmp/b/src [--repeats 6 3 3] [--out results/rl_step_ab.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

TASKS = [("ppo", "InvertedPendulum-v5", 4096), ("sac", "Pendulum-v1", 600), ("dqn", "Acrobot-v1", 2048)]

CHILD = """
import sys, time, warnings
warnings.filterwarnings("ignore")
from dataclasses import replace
from reflow.rl.config import resolve
from reflow.rl.train import train
algo, env_id, steps = sys.argv[1], sys.argv[2], int(sys.argv[3])
cfg = replace(resolve(env_id, algo), seed=0, total_steps=steps, target_return=None, eval_every=0)
train(replace(cfg, total_steps=256))
t0 = time.process_time()
train(cfg)
print((time.process_time() - t0) / steps * 1e6)
"""


def measure(src: str, algo: str, env_id: str, steps: int) -> float:
    """CPU microseconds per env step of one training run with reflow imported from ``src``."""
    env = {**os.environ, "PYTHONPATH": src}
    out = subprocess.run(
        [sys.executable, "-c", CHILD, algo, env_id, str(steps)], env=env, capture_output=True, text=True
    )
    if out.returncode != 0:
        raise SystemExit(f"{algo} {env_id} from {src} failed:\n{out.stderr[-2000:]}")
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("a", help="tree A's src directory (the baseline)")
    ap.add_argument("b", help="tree B's src directory")
    ap.add_argument("--repeats", type=int, nargs=len(TASKS), default=[6, 3, 3], help="per task")
    ap.add_argument("--out", type=Path, default=Path("results/rl_step_ab.json"))
    args = ap.parse_args()
    out = {}
    print("| task | steps | repeats | A us/step | B us/step | B / A [min, max] |")
    print("|---|---:|---:|---:|---:|---|")
    for (algo, env_id, steps), reps in zip(TASKS, args.repeats, strict=True):
        t: dict[str, list[float]] = {"A": [], "B": []}
        for r in range(reps):
            for tree in ("A", "B") if r % 2 == 0 else ("B", "A"):
                t[tree].append(measure(args.a if tree == "A" else args.b, algo, env_id, steps))
        ratios = [b / a for a, b in zip(t["A"], t["B"], strict=True)]
        ma, mb = statistics.median(t["A"]), statistics.median(t["B"])
        out[f"{algo}-{env_id}"] = {"steps": steps, "us_per_step": t, "ratio_of_medians": mb / ma}
        print(f"| {algo}-{env_id} | {steps} | {reps} | {ma:.0f} | {mb:.0f} | {mb / ma:.3f} "
              f"[{min(ratios):.3f}, {max(ratios):.3f}] |", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    record = {"a": args.a, "b": args.b, "tasks": out, "load": os.getloadavg()}
    args.out.write_text(json.dumps(record, indent=1))
    print(f"wrote {args.out}; load average {[round(x, 1) for x in os.getloadavg()]}")


if __name__ == "__main__":
    main()
