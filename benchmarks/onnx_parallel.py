"""Claim: reflow's generated parallel PyTorch code beats serial PyTorch and onnxruntime on wide models.

Side by side, in one process, with the same thread budget P, for batch 1 and batch 8:

* ``torch serial``   the generated serial function with P intra-op threads;
* ``reflow``         the generated parallel code (clusters on threads, or batch slices for batch > 1);
* ``reflow procs``   the same code with the clusters (or slices) in worker processes over shared memory
                     (``reflow.onnx.processes``; only where the plan has more than one cluster or slice);
* ``procs plan``     the plan made for processes (``parallelize(runtime="processes")``: a cheaper wait per
                     cross-cluster value) run in worker processes; only where it differs from the thread
                     plan (elsewhere it is ``reflow procs``);
* ``ort seq``        onnxruntime, sequential execution, P intra-op threads;
* ``ort parallel``   onnxruntime, ORT_PARALLEL execution, P inter-op threads (1 intra-op thread each).

Each timing is the median over rounds of blocks of calls (each variant a few calls in a row, the first of
them untimed; see reflow.onnx.timing). Reported as ratios:
``vs best ort`` > 1 means the better reflow runtime is faster than the better onnxruntime setting; ``rounds``
is the lowest and highest of that ratio over the rounds (how far the shared box moved it). Writes
results/onnx_parallel.json
and results/onnx_parallel.png.

    flock -x /tmp/reflow-cpu.lock .venv/bin/python benchmarks/onnx_parallel.py          # P = all cores
    flock -x /tmp/reflow-cpu.lock .venv/bin/python benchmarks/onnx_parallel.py --quick  # a short run

The torchvision models come from `make onnx-models` (see benchmarks/onnx_export_models.py).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
from tqdm import tqdm

from reflow.onnx.costmodel import random_inputs
from reflow.onnx.importer import import_model
from reflow.onnx.models import light_model, set_batch, transformer_model, wide_model
from reflow.onnx.pipeline import describe, is_parallel, parallelize
from reflow.onnx.processes import ProcessModel, load_module
from reflow.onnx.timing import steady_medians

LIGHT = ["inception_v1", "inception_v2", "squeezenet", "resnet50", "densenet121", "wide4"]
TORCHVISION = [
    "resnet18",
    "googlenet",
    "inception_v3",
    "mobilenet_v2",
    "efficientnet_b0",
    "densenet121_tv",
    "vit_b_16",
    "transformer",
]
FULL_MODELS = LIGHT + TORCHVISION
QUICK_MODELS = ["inception_v1", "transformer"]
VARIANTS = ("torch serial", "reflow", "reflow procs", "procs plan", "ort seq", "ort parallel")


# torchvision models, exported by benchmarks/onnx_export_models.py (`make onnx-models`) into this folder
EXPORTED = (
    "resnet18",
    "googlenet",
    "inception_v3",
    "mobilenet_v2",
    "efficientnet_b0",
    "densenet121",
    "vit_b_16",
)
MODEL_CACHE = Path(os.environ.get("REFLOW_ONNX_MODELS", "~/.cache/reflow/onnx-models")).expanduser()


def make_model(name: str, batch: int) -> onnx.ModelProto:
    """A benchmark model at ``batch``: a light model or a wide graph (random weights, made here), the small
    transformer encoder (exported here under the pinned torch) or a torchvision model from the cache."""
    if name.startswith("wide"):
        return wide_model(int(name[4:]), batch=batch, size=28, channels=64, blocks=4)
    if name == "transformer":
        return set_batch(transformer_model(), batch)
    if name.removesuffix("_tv") in EXPORTED:  # densenet121_tv: torchvision's, beside the light one
        path = MODEL_CACHE / f"{name.removesuffix('_tv')}.onnx"
        if not path.exists():
            raise SystemExit(f"{path} is missing: run `make onnx-models` (exports the torchvision models)")
        return set_batch(onnx.load(os.fspath(path)), batch)
    return light_model(name, seed=0, batch=batch)


def ort_session(proto: onnx.ModelProto, threads: int, parallel: bool) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.log_severity_level = 3
    if parallel:
        so.execution_mode = ort.ExecutionMode.ORT_PARALLEL
        so.inter_op_num_threads = threads
        so.intra_op_num_threads = 1
    else:
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.intra_op_num_threads = threads
    return ort.InferenceSession(proto.SerializeToString(), so, providers=["CPUExecutionProvider"])


def bench_one(name: str, batch: int, workers: int, repeats: int, tmp: Path) -> dict[str, Any]:
    proto = make_model(name, batch)
    result = parallelize(proto, workers=workers)
    py, _ = result.code.write(tmp / f"{name}_b{batch}_p{workers}.py")
    mod = load_module(py)
    x = random_inputs(import_model(proto), seed=1)
    import torch

    tx = {k: torch.from_numpy(v) for k, v in x.items()}
    seq, par = ort_session(proto, workers, False), ort_session(proto, workers, True)
    plan = result.plan
    parallel = is_parallel(plan)
    pplan = plan  # the plan made for worker processes, where it differs
    if workers > 1:
        presult = parallelize(proto, workers=workers, runtime="processes")
        if _shape_of(presult.plan) != _shape_of(plan):
            pplan = presult.plan
            ppy, _ = presult.code.write(tmp / f"{name}_b{batch}_p{workers}_procs.py")
    pparallel = pplan is not plan and is_parallel(pplan)
    with mod.load(runtime="threads") as model, (
        ProcessModel(py) if parallel else contextlib.nullcontext(model)
    ) as procs, (ProcessModel(ppy) if pparallel else contextlib.nullcontext(procs)) as pprocs:
        ref = seq.run(None, x)[0]
        errs = [
            float(np.abs(ref - m(**tx)[mod.OUTPUTS[0]].numpy()).max() / max(float(np.abs(ref).max()), 1e-12))
            for m in (model, procs, pprocs)
        ]
        fns = {
            "torch serial": lambda: model.serial(**tx),
            "reflow": lambda: model(**tx),
            "reflow procs": lambda: procs(**tx),
            "procs plan": lambda: pprocs(**tx),
            "ort seq": lambda: seq.run(None, x),
            "ort parallel": lambda: par.run(None, x),
        }
        if not parallel:  # one cluster: a worker process would run the same code as the thread
            del fns["reflow procs"]
        if not pparallel:
            del fns["procs plan"]
        t, rounds = steady_medians(fns, repeats)
    t.setdefault("reflow procs", float("nan"))
    t.setdefault("procs plan", t["reflow procs"])
    best_reflow, best_ort = _best_reflow(t), _best_ort(t)
    per_round = [_best_ort(rt) / _best_reflow(rt) for rt in rounds]
    return {
        "model": name,
        "batch": batch,
        "workers": workers,
        "times_ms": {k: v * 1e3 for k, v in t.items()},
        "speedup_vs_serial": t["torch serial"] / best_reflow,
        "measured_speedup": result.measured_serial / best_reflow,  # over one thread, as predicted
        "speedup_vs_best_ort": best_ort / best_reflow,
        "vs_best_ort_rounds": [min(per_round), max(per_round)],  # the same ratio, round by round: its spread
        "procs_vs_threads": t["reflow"] / t["reflow procs"],
        "procs_plan": _shape_of(pplan),  # (mode, clusters, slices) of the plan made for processes
        "procs_plan_predicted": pplan.predicted_speedup,
        "plan": describe(plan),  # '2 batch slices', '2 clusters', 'intra-op (2 threads)'
        "mode": plan.mode,
        "clusters": len(plan.clusters),
        "nodes": plan.compute_nodes,
        "predicted_speedup": plan.predicted_speedup,
        "bound": plan.bound,
        "cost_model_error": result.cost_model_error,
        "rel_err_vs_ort": max(errs),
        "ref_max_abs": float(np.abs(ref).max()),  # a check against an all-zero output would say nothing
        "loadavg_1min": os.getloadavg()[0],  # how loaded the shared box was while this row ran
    }


def _best_reflow(t: dict[str, float]) -> float:
    """The fastest of reflow's variants, the plan made for processes included (a user gets it with
    ``parallelize(runtime="processes")``)."""
    return min(v for k, v in t.items() if (k.startswith("reflow") or k == "procs plan") and v == v)


def _best_ort(t: dict[str, float]) -> float:
    return min(t["ort seq"], t["ort parallel"])


def _shape_of(plan: Any) -> tuple[str, int, int]:
    return (plan.mode, len(plan.clusters), plan.batch_slices)


def print_table(rows: list[dict[str, Any]]) -> None:
    head = (
        f"{'model':<16}{'batch':>6}{'P':>3}{'plan':>22}  "
        + "".join(f"{v:>14}" for v in VARIANTS)
        + f"{'vs serial':>11}{'vs best ort':>12}{'rounds':>12}{'predicted':>10}{'measured':>9}{'bound':>7}"
        + f"{'cm err':>8}"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        t = r["times_ms"]
        print(
            f"{r['model']:<16}{r['batch']:>6}{r['workers']:>3}{r['plan']:>22}  "
            + "".join(f"{t[v]:>11.2f} ms" for v in VARIANTS)
            + f"{r['speedup_vs_serial']:>10.2f}x{r['speedup_vs_best_ort']:>11.2f}x"
            + "{:>12}".format("{:.2f}-{:.2f}".format(*r["vs_best_ort_rounds"]))
            + f"{r['predicted_speedup']:>9.2f}x{r['measured_speedup']:>8.2f}x{r['bound']:>6.2f}x"
            + f"{r['cost_model_error']:>+8.0%}"
        )


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{r['model']}\nb{r['batch']} P{r['workers']}" for r in rows]
    fig, ax = plt.subplots(figsize=(max(6, len(rows) * 0.9), 4))
    xs = np.arange(len(rows))
    ax.bar(xs - 0.2, [r["speedup_vs_serial"] for r in rows], 0.4, label="reflow vs torch serial")
    ax.bar(xs + 0.2, [r["speedup_vs_best_ort"] for r in rows], 0.4, label="reflow vs best onnxruntime")
    ax.axhline(1.0, color="k", lw=0.8)
    ax.set_xticks(xs, labels, fontsize=7)
    ax.set_ylabel("speedup (>1: reflow faster)")
    ax.set_title("ONNX auto-parallelization, same thread budget P (shared 2-core box)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="two models, fewer repeats")
    ap.add_argument("--models", nargs="*", help=f"models (default: {' '.join(FULL_MODELS)})")
    ap.add_argument("--batches", nargs="*", type=int, default=[1, 8])
    ap.add_argument("--workers", nargs="*", type=int, default=None, help="budgets P (default: all cores)")
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--out", default="results")
    args = ap.parse_args(argv)
    cores = os.cpu_count() or 1
    models = args.models or (QUICK_MODELS if args.quick else FULL_MODELS)
    workers = args.workers or [cores]
    repeats = args.repeats or (5 if args.quick else 15)
    out = Path(args.out)
    out.mkdir(exist_ok=True)
    rows: list[dict[str, Any]] = []
    jobs = [(m, b, p) for m in models for b in args.batches for p in workers]

    def save() -> None:  # after every row: a run cut short still leaves the rows it finished
        meta = {
            "machine": f"{cores} cores, shared box (other jobs running), no GPU",
            "python": sys.version.split()[0],
            "onnxruntime": ort.__version__,
            "repeats": repeats,
            "loadavg_1min": os.getloadavg()[0],
            "rows": rows,
        }
        (out / "onnx_parallel.json").write_text(json.dumps(meta, indent=2))

    with tempfile.TemporaryDirectory() as d:
        for m, b, p in tqdm(jobs, desc="onnx_parallel", unit="config"):
            rows.append(bench_one(m, b, p, repeats, Path(d)))
            print_table(rows[-1:])
            save()
    print_table(rows)
    plot(rows, out / "onnx_parallel.png")
    print(f"wrote {out / 'onnx_parallel.json'} and {out / 'onnx_parallel.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
