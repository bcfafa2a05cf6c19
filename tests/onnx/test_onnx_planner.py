"""Plans made by the shared clustering passes, and the `reflow parallelize` command."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
import torch
from onnx_oracle import exec_generated, ort_run, rel_err

from reflow.onnx import import_model
from reflow.onnx.costmodel import apply_costs, flop_costs, random_inputs
from reflow.onnx.models import wide_model
from reflow.onnx.pipeline import describe, parallelize
from reflow.onnx.planner import make_plan

pytestmark = pytest.mark.timeout(120)


@pytest.mark.parametrize("branches", [2, 4, 8])
def test_plan_for_wide_graph_is_parallel_and_correct(branches: int) -> None:
    proto = wide_model(branches, size=12, channels=16)
    model = import_model(proto)
    model = apply_costs(model, flop_costs(model))
    plan = make_plan(model.graph, 2)
    assert 1 <= len(plan.clusters) <= 2
    assert plan.bound >= 1.0 and plan.makespan <= plan.serial_cost * 1.01
    every = [n for c in plan.clusters for n in c if "clone_of" not in plan.graph.node(n).attrs]
    assert sorted(every) == sorted(n.name for n in model.graph if n.op.startswith("onnx."))
    from reflow.onnx.codegen import generate

    code = generate(model, plan)
    ns = exec_generated(code.source, f"plan{branches}")
    x = random_inputs(model, seed=branches)
    (ref,) = ort_run(proto, x)
    with ns["ParallelModel"]({k: torch.from_numpy(np.array(v)) for k, v in code.weights.items()}) as par:
        out = par(input=torch.from_numpy(x["input"]))["output"].numpy()
    assert rel_err(ref, out) < 1e-4


def _slow_wide(batch: int) -> object:
    model = import_model(wide_model(2, size=12, channels=16, batch=batch))
    return apply_costs(model, {k: 100 * v for k, v in flop_costs(model).items()})  # ms-sized ops


def test_batch_slice_plans_never_predict_more_than_the_slice_count() -> None:
    """Issue 18: a slice profiled at a quarter of the serial cost predicted 4x on 2 workers."""
    g = _slow_wide(8).graph  # type: ignore[attr-defined]
    total = g.total_cost()
    plan = make_plan(g, 2, slice_cost=total / 4, batch=8, intra_cost=total)
    assert plan.mode == "batch" and plan.batch_slices == 2
    assert 1.5 < plan.predicted_speedup <= 2.0


def test_the_intra_op_plan_wins_where_it_is_measured_faster() -> None:
    """The planner weighs one cluster on P torch threads (measured) against inter-op clusters."""
    g = _slow_wide(1).graph  # type: ignore[attr-defined]
    total = g.total_cost()
    inter = make_plan(g, 2, measured_serial=total, intra_cost=total)
    assert len(inter.clusters) == 2 and inter.intra_threads == 1
    intra = make_plan(g, 2, measured_serial=total, intra_cost=0.55 * total)
    assert intra.clusters == (tuple(n.name for n in g if n.op.startswith("onnx.")),)
    assert intra.intra_threads == 2 and intra.predicted_speedup == pytest.approx(1 / 0.55)


def test_a_plan_for_worker_processes_splits_where_a_thread_wait_would_not_pay() -> None:
    """Issue 18: the planner charged every runtime a thread's wait (0.5 ms, the GIL won back); a wait in the
    process runtime is a pipe message, so a 4 ms wide graph is worth two clusters there and not on threads."""
    model = import_model(wide_model(2, size=12, channels=16))
    costs = flop_costs(model)
    total = sum(costs.values())
    g = apply_costs(model, {k: v * 4e-3 / total for k, v in costs.items()}).graph
    kw = {"measured_serial": g.total_cost(), "intra_cost": g.total_cost()}
    threads = make_plan(g, 2, **kw)  # type: ignore[arg-type]
    procs = make_plan(g, 2, runtime="processes", **kw)  # type: ignore[arg-type]
    assert len(threads.clusters) == 1 and threads.predicted_speedup == pytest.approx(1.0)
    assert len(procs.clusters) == 2 and procs.predicted_speedup > 1.1
    with pytest.raises(ValueError, match="runtime must be one of"):
        make_plan(g, 2, runtime="fibers")


def test_parallelize_command_writes_module_and_prints_summary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from reflow.onnx import commands

    src = tmp_path / "wide.onnx"
    onnx.save(wide_model(3, size=12, channels=16), src)
    parser = argparse.ArgumentParser()
    commands.register(parser.add_subparsers())
    args = parser.parse_args(
        [
            "parallelize",
            str(src),
            "-o",
            str(tmp_path / "wide_par.py"),
            "--workers",
            "2",
            "--no-profile",
            "--svg",
            str(tmp_path / "wide_par.svg"),
        ]
    )
    assert args.func(args) == 0
    out = capsys.readouterr().out
    for word in ("nodes", "clusters", "bound", "predicted"):
        assert word in out
    assert (tmp_path / "wide_par.py").exists() and (tmp_path / "wide_par.pt").exists()
    assert (tmp_path / "wide_par.svg").read_text().lstrip().startswith("<")


def test_the_pipeline_keeps_the_faster_of_the_parallel_and_the_intra_op_plan(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A parallel plan is predicted; whether it beats one cluster on P torch threads is measured: both
    modules are timed and the faster kept, and the kept module still computes onnxruntime's result."""
    from reflow.onnx import pipeline

    measure, serial = pipeline._measure, [0.0]

    def intra_at_serial_time(model: Any, threads: int, compiled: bool) -> float:
        """The intra-op plan predicted at the one-thread time just measured: a parallel plan is predicted."""
        if threads == 1:
            serial[0] = measure(model, 1, compiled)
        return serial[0]

    monkeypatch.setattr(pipeline, "_measure", intra_at_serial_time)
    proto = wide_model(3, batch=4, size=64, channels=48)  # batch slices (2 of 4 rows) are predicted faster
    result = parallelize(proto, workers=2, profile_ops=False, time_plans=True)
    timed = result.measured_plans
    assert len(timed) == 2 and "intra-op (2 threads)" in timed and all(t > 0 for t in timed.values())
    assert describe(result.plan) == min(timed, key=timed.__getitem__)
    x = random_inputs(result.model, seed=3)
    (ref,) = ort_run(proto, x)
    ns = exec_generated(result.code.source, "timed_choice")
    weights = {k: torch.from_numpy(np.array(v)) for k, v in result.code.weights.items()}
    with ns["ParallelModel"](weights) as model:
        assert rel_err(ref, model(input=torch.from_numpy(x["input"]))["output"].numpy()) < 1e-4
    untimed = parallelize(proto, workers=2, profile_ops=False)  # the analytic pipeline times nothing
    assert untimed.measured_plans == {} and untimed.plan.mode == "batch"
