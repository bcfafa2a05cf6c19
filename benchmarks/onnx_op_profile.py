"""Where one thread's time goes: reflow's generated ops beside onnxruntime's kernels, per op type.

For each model, in one process and on one thread each: reflow's per-node costs, every generated line timed
alone on the real intermediate values (``reflow.onnx.costmodel.profile``) and timed inside whole runs
(``in_situ_costs``), and onnxruntime's per-node kernel times (``enable_profiling``, medians over runs; in
situ, since its profiler times whole runs). Both are grouped by op type (a reflow ``FusedConv`` with
its absorbed Add/Relu/Clip is one row; onnxruntime's fused nodes are named by their op too), with the
whole-graph times of both. It locates the gap the parallel benchmark shows. Writes
results/onnx_op_profile.json.

    flock -x /tmp/reflow-cpu.lock .venv/bin/python benchmarks/onnx_op_profile.py --models mobilenet_v2
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

import onnx
import onnxruntime as ort
from onnx_parallel import make_model

from reflow.onnx.costmodel import in_situ_costs, measure_graph, profile, random_inputs
from reflow.onnx.importer import import_model
from reflow.onnx.pipeline import prepare
from reflow.onnx.timing import steady_medians


def ort_profile(proto: onnx.ModelProto, x: dict[str, Any], runs: int) -> dict[str, float]:
    """onnxruntime's median kernel time per op type (seconds, summed over the nodes of that type)."""
    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.intra_op_num_threads = 1
    so.enable_profiling = True
    so.profile_file_prefix = os.path.join(tempfile.mkdtemp(), "ort")
    sess = ort.InferenceSession(proto.SerializeToString(), so, providers=["CPUExecutionProvider"])
    for _ in range(runs):
        sess.run(None, x)
    events = json.loads(Path(sess.end_profiling()).read_text())
    per_node: dict[tuple[str, str], list[float]] = defaultdict(list)
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            per_node[(e["args"]["op_name"], e["name"])].append(e["dur"] * 1e-6)
    out: dict[str, float] = defaultdict(float)
    for (op, _), times in per_node.items():
        out[op] += statistics.median(times[1:] or times)  # the first run warms up
    return dict(out)


def reflow_profile(
    proto: onnx.ModelProto, x: dict[str, Any], repeats: int
) -> tuple[dict[str, float], dict[str, float]]:
    """reflow's seconds per op type: each node timed alone, called again and again (``profile``), and each
    timed inside whole runs (``in_situ_costs``, as onnxruntime's profiler times its kernels)."""
    model = prepare(proto)

    def by_op(costs: dict[str, float]) -> dict[str, float]:
        totals: dict[str, float] = defaultdict(float)
        for name, cost in costs.items():
            totals[model.graph.node(name).op.removeprefix("onnx.")] += cost
        return dict(totals)

    return by_op(profile(model, x, repeats=repeats).costs), by_op(in_situ_costs(model, x, repeats=repeats))


def _ms(*seconds: float) -> str:
    return "".join(f"{t * 1e3:>{w}.2f} ms" for t, w in zip(seconds, (11, 8, 20), strict=True))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="one model, fewer repeats")
    ap.add_argument("--models", nargs="*", default=None)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--out", default="results")
    args = ap.parse_args(argv)
    models = args.models or (["transformer"] if args.quick else ["resnet18", "mobilenet_v2", "transformer"])
    repeats = args.repeats or (3 if args.quick else 7)
    report: dict[str, Any] = {}
    for name in models:
        proto = make_model(name, args.batch)
        x = random_inputs(import_model(proto), seed=1)
        (ours, situ), theirs = reflow_profile(proto, x, repeats), ort_profile(proto, x, repeats + 1)
        so = ort.SessionOptions()
        so.log_severity_level = 3
        so.intra_op_num_threads = 1
        sess = ort.InferenceSession(proto.SerializeToString(), so, providers=["CPUExecutionProvider"])
        whole = {
            "reflow": measure_graph(prepare(proto), x, repeats=repeats),
            "ort": steady_medians({"ort": lambda s=sess, x=x: s.run(None, x)}, repeats)[0]["ort"],  # type: ignore[misc]
        }
        print(
            f"\n{name}, batch {args.batch}, 1 thread: whole graph reflow {whole['reflow'] * 1e3:.2f} ms "
            f"onnxruntime {whole['ort'] * 1e3:.2f} ms"
        )
        print(f"  {'op':<22}{'reflow alone':>14}{'in situ':>11}{'onnxruntime (in situ)':>23}")
        for op in sorted(set(ours) | set(theirs), key=lambda o: -max(situ.get(o, 0), theirs.get(o, 0))):
            print(f"  {op:<22}" + _ms(ours.get(op, 0), situ.get(op, 0), theirs.get(op, 0)))
        print(f"  {'sum':<22}" + _ms(sum(ours.values()), sum(situ.values()), sum(theirs.values())))
        report[name] = {"reflow_ms": ours, "reflow_in_situ_ms": situ, "ort_ms": theirs, "whole_ms": whole}
    out = Path(args.out)
    out.mkdir(exist_ok=True)
    (out / "onnx_op_profile.json").write_text(json.dumps(report, indent=2))
    print(f"wrote {out / 'onnx_op_profile.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
