"""Claim: letting malloc keep freed memory (the generated runtime's default) speeds up large batches.

glibc's malloc gives every block above 32 MB a mapping of its own and trims the heap's free top, so at large
batches each call gets fresh pages that the kernel zeroes on first touch; onnxruntime's arena keeps its
buffers. The setting is process-wide and cannot be undone in a process, so each side runs in processes of
its own, alternating: the generated module (serial plan, one torch thread) loaded with
``load(keep_memory=True)`` (the default) or ``load(keep_memory=False)``, and in the same process onnxruntime
with one intra-op thread, timed in balanced rounds (reflow.onnx.timing). Reported per model: reflow's time
with each setting, and reflow / onnxruntime within each process (a ratio the box's drift between processes
does not move). Writes results/onnx_memory.json.

    .venv/bin/python benchmarks/onnx_memory.py --models efficientnet_b0 mobilenet_v2 googlenet --batch 8
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from onnx_parallel import make_model

from reflow.onnx.pipeline import parallelize

_ONE_PROCESS = """
import json, sys
import onnx, torch
sys.path[:0] = [{folder!r}, {benchmarks!r}]
from onnx_parallel import ort_session
from reflow.onnx.timing import steady_medians
import {module} as mod

torch.set_num_threads(1)
with mod.load(keep_memory={keep}) as model:
    x = mod.random_inputs(seed=1)
    feed = {{k: v.numpy() for k, v in x.items()}}
    session = ort_session(onnx.load({onnx_path!r}), 1, parallel=False)
    fns = {{"reflow": lambda: model(**x), "onnxruntime": lambda: session.run(None, feed)}}
    t, _ = steady_medians(fns, {calls})
print(json.dumps(t))
"""


def one_process(folder: Path, module: str, onnx_path: Path, keep: bool, calls: int) -> dict[str, float]:
    code = _ONE_PROCESS.format(
        folder=str(folder),
        benchmarks=str(Path(__file__).resolve().parent),
        module=module,
        onnx_path=str(onnx_path),
        keep=keep,
        calls=calls,
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=900)
    if r.returncode != 0:
        raise RuntimeError(f"the timing process failed:\n{r.stderr}")
    times: dict[str, float] = json.loads(r.stdout.strip().splitlines()[-1])
    return times


def bench_model(name: str, batch: int, processes: int, calls: int, tmp: Path) -> dict[str, Any]:
    proto = make_model(name, batch)
    onnx_path = tmp / f"{name}_b{batch}.onnx"
    onnx_path.write_bytes(proto.SerializeToString())
    module = f"{name}_b{batch}_serial"
    parallelize(proto, workers=1, profile_ops=False).code.write(tmp / f"{module}.py")
    runs: dict[bool, list[dict[str, float]]] = {True: [], False: []}
    for i in range(2 * processes):
        keep = i % 2 == 1
        runs[keep].append(one_process(tmp, module, onnx_path, keep, calls))
    row: dict[str, Any] = {"model": name, "batch": batch}
    for keep, label in ((False, "default"), (True, "kept")):
        row[f"reflow_ms_{label}"] = statistics.median(r["reflow"] for r in runs[keep]) * 1e3
        row[f"ort_ms_{label}"] = statistics.median(r["onnxruntime"] for r in runs[keep]) * 1e3
        row[f"vs_ort_{label}"] = statistics.median(r["onnxruntime"] / r["reflow"] for r in runs[keep])
    row["kept_speedup"] = row["reflow_ms_default"] / row["reflow_ms_kept"]
    return row


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--models", nargs="*", default=["efficientnet_b0", "mobilenet_v2", "googlenet", "resnet18"]
    )
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--processes", type=int, default=3, help="processes per setting, alternating")
    ap.add_argument("--calls", type=int, default=8, help="timed calls per variant and process")
    ap.add_argument("--quick", action="store_true", help="one light model, one process per setting")
    ap.add_argument("--out", default="results")
    args = ap.parse_args(argv)
    if args.quick:
        args.models, args.processes, args.calls = ["squeezenet"], 1, 3
    print(f"batch {args.batch}, 1 thread, {args.processes} processes per setting; ms, reflow / onnxruntime")
    print(f"{'model':<18}{'default':>10}{'kept':>10}{'speedup':>9}{'vs ort default':>16}{'vs ort kept':>13}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            r = bench_model(name, args.batch, args.processes, args.calls, Path(tmp))
            rows.append(r)
            print(
                f"{name:<18}{r['reflow_ms_default']:>10.2f}{r['reflow_ms_kept']:>10.2f}{r['kept_speedup']:>8.2f}x"
                f"{r['vs_ort_default']:>15.2f}x{r['vs_ort_kept']:>12.2f}x"
            )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "onnx_memory.json").write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
