"""The summary table ``reflow parallelize`` prints."""

from __future__ import annotations

from collections.abc import Sequence

from reflow.onnx.pipeline import Result


def table(rows: Sequence[tuple[str, str]]) -> str:
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"  {k.ljust(width)}  {v}" for k, v in rows)


def summary_table(r: Result) -> str:
    p = r.plan
    rows = [
        ("model", r.model.name),
        ("nodes", f"{p.compute_nodes} (after folding {r.model.folded} constant nodes)"),
        ("linear clusters", str(p.linear_clusters)),
        ("clusters", f"{len(p.clusters)} for {p.workers} workers, {p.intra_threads} intra-op thread(s) each"),
        ("mode", p.mode + (f" ({p.batch_slices} batch slices)" if p.mode == "batch" else "")),
        ("serial cost", f"{p.serial_cost * 1e3:.3f} ms (sum of profiled ops)"),
        ("measured serial", f"{r.measured_serial * 1e3:.3f} ms (cost model error {r.cost_model_error:+.1%})"),
        ("critical path", f"{p.critical_path * 1e3:.3f} ms"),
        ("bound", f"{p.bound:.2f}x (work / critical path)"),
        ("predicted", f"{p.makespan * 1e3:.3f} ms, speedup {p.predicted_speedup:.2f}x"),
    ]
    if r.compilation:
        rows.append(("compiled", r.compilation))
    return table(rows)
