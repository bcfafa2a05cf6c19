"""Claim: dense weights packed once at load (onnx_pack_linear_weight) make whole generated models faster.

oneDNN's matrix product reorders a plain (out, in) weight into its blocked layout on every call; since round 9
of issue 18 the generated ``prepare_weights`` does that once, for the rows each product will meet (the
Linear layers of transformers, classifier heads, and 1x1 convolutions run as one GEMM over the pixels). Here
the same generated module runs, in one process and alternating (reflow.onnx.timing), on its prepared weights
(``packed``) and on the same weights with every packed matrix turned back into a plain one (``plain``, the
code before), with onnxruntime on as many threads beside them, for scale. Writes
results/onnx_dense_packing.json.

    .venv/bin/python benchmarks/onnx_dense_packing.py --models transformer mobilenet_v2 vit_b_16 --batches 1 8
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import onnxruntime as ort
import torch
from onnx_parallel import make_model

from reflow.onnx.costmodel import random_inputs
from reflow.onnx.pipeline import parallelize
from reflow.onnx.processes import load_module
from reflow.onnx.timing import steady_medians


def bench(name: str, batch: int, threads: int, calls: int, tmp: Path) -> dict[str, Any]:
    proto = make_model(name, batch)
    result = parallelize(proto, workers=1, profile_ops=False)
    py, _ = result.code.write(tmp / f"{name}_{batch}.py")
    mod = load_module(py)
    mod.onnx_keep_freed_memory()
    raw = torch.load(py.with_suffix(".pt"), weights_only=True)
    x = random_inputs(result.model, seed=1)
    xt = {k: torch.from_numpy(v) for k, v in x.items()}
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.log_severity_level = 3
    sess = ort.InferenceSession(proto.SerializeToString(), so, providers=["CPUExecutionProvider"])
    torch.set_num_threads(threads)
    with torch.inference_mode():
        packed = mod.prepare_weights(raw, batch)
        plain = {k: v.to_dense() if v.is_mkldnn and v.dim() == 2 else v for k, v in packed.items()}
        n_packed = sum(v.is_mkldnn and v.dim() == 2 for v in packed.values())
        ref = mod.forward_serial(plain, xt)
        got = mod.forward_serial(packed, xt)
        err = max(float((got[k] - ref[k]).abs().max() / ref[k].abs().max()) for k in ref)
        t, _ = steady_medians(
            {
                "plain": lambda: mod.forward_serial(plain, xt),
                "packed": lambda: mod.forward_serial(packed, xt),
                "onnxruntime": lambda: sess.run(None, x),
            },
            calls,
        )
    return {
        "model": name,
        "batch": batch,
        "threads": threads,
        "packed_weights": n_packed,
        "times_ms": {k: v * 1e3 for k, v in t.items()},
        "plain_over_packed": t["plain"] / t["packed"],
        "max_rel_diff": err,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="*", default=["transformer", "mobilenet_v2", "vit_b_16"])
    p.add_argument("--batches", nargs="*", type=int, default=[1, 8])
    p.add_argument("--threads", nargs="*", type=int, default=[1, 2])
    p.add_argument("--calls", type=int, default=24)
    p.add_argument("--out", default="results")
    a = p.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory(prefix="reflow-packing-") as d:
        for name, batch, threads in itertools.product(a.models, a.batches, a.threads):
            r = bench(name, batch, threads, a.calls, Path(d))
            rows.append(r)
            t = r["times_ms"]
            print(
                f"{name:16} batch {batch} {threads} thr: {r['packed_weights']:3} packed | plain "
                f"{t['plain']:8.2f} ms  packed {t['packed']:8.2f} ms  onnxruntime {t['onnxruntime']:8.2f}"
                f" ms | plain / packed {r['plain_over_packed']:.3f}x  (max rel diff {r['max_rel_diff']:.1e})",
                flush=True,
            )
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "onnx_dense_packing.json").write_text(json.dumps(rows, indent=2))
    print(f"wrote {out / 'onnx_dense_packing.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
