"""Generated parallel code on synthetic wide graphs: right answers, a runnable standalone file, clean failure.

The plans here are made by hand (one cluster per branch index), so these tests check the code generator and
its threaded runtime on their own; test_onnx_planner.py checks plans made by the clustering passes.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from onnx_oracle import exec_generated, ort_run, rel_err

from reflow.onnx import import_model
from reflow.onnx.codegen import generate
from reflow.onnx.costmodel import apply_costs, flop_costs, random_inputs
from reflow.onnx.importer import ImportedModel
from reflow.onnx.models import wide_model
from reflow.onnx.plan import Plan

pytestmark = pytest.mark.timeout(120)


def branch_plan(model: ImportedModel, workers: int) -> Plan:
    """Cluster k gets branch k of every block (mod ``workers``); the joins go to cluster 0."""
    g = model.graph
    clusters: list[list[str]] = [[] for _ in range(workers)]
    for n in g:
        if n.op.startswith("onnx."):
            k = int(n.name.split("_br")[1].split("_")[0]) % workers if "_br" in n.name else 0
            clusters[k].append(n.name)
    total = g.total_cost()
    return Plan(
        g,
        tuple(tuple(c) for c in clusters if c),
        workers,
        "clusters",
        1,
        1,
        total,
        total / workers,
        total / workers,
        workers,
        len(g),
    )


def costed(branches: int, batch: int = 1) -> tuple[ImportedModel, object]:
    proto = wide_model(branches, batch=batch, size=12, channels=16)
    model = import_model(proto)
    return apply_costs(model, flop_costs(model)), proto


@pytest.mark.parametrize("branches", [2, 3, 5, 8])
def test_wide_graph_parallel_code_matches_onnxruntime(branches: int) -> None:
    model, proto = costed(branches)
    x = random_inputs(model, seed=branches)
    (ref,) = ort_run(proto, x)  # type: ignore[arg-type]
    code = generate(model, branch_plan(model, min(branches, 4)))
    ns = exec_generated(code.source, f"wide{branches}")
    weights = {k: torch.from_numpy(np.array(v)) for k, v in code.weights.items()}
    with ns["ParallelModel"](weights) as par:
        for _ in range(3):  # the persistent workers serve repeated calls
            out = par(input=torch.from_numpy(x["input"]))["output"].numpy()
            assert rel_err(ref, out) < 1e-4
        serial = par.serial(input=torch.from_numpy(x["input"]))["output"].numpy()
    assert rel_err(ref, serial) < 1e-4
    assert len(code.source.split("\ndef cluster_")) - 1 == min(branches, 4)


def test_generated_file_runs_alone_with_only_torch(tmp_path: Path) -> None:
    model, _ = costed(3)
    py, pt = generate(model, branch_plan(model, 2)).write(tmp_path / "wide_par.py")
    assert pt.exists()
    check = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(tmp_path)!r})
        import wide_par
        with wide_par.load() as m:
            x = wide_par.random_inputs()
            a, b = m(**x)["output"], m.serial(**x)["output"]
        assert (a - b).abs().max() < 1e-5
        leaked = [k for k in sys.modules if k.startswith(("reflow", "onnx"))]
        assert not leaked, f"generated code imported {{leaked}}"
        print("ok")
    """)
    r = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "ok" in r.stdout, r.stderr
    r = subprocess.run([sys.executable, str(py)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "speedup" in r.stdout, r.stderr


_FAULTS_OF_A_BIG_TENSOR = """
import resource, sys, torch
sys.path.insert(0, {where!r})
{setup}
faults = []
for _ in range(12):  # a 64 MB tensor and a 12 MB one made, written and freed, as a model's call does
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    big, small = torch.empty(16 << 20).fill_(1.0), torch.empty(3 << 20).fill_(2.0)
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    del big, small
print(sum(faults[-3:]))
"""


def _steady_page_faults(setup: str, where: Path) -> int:
    """Page faults of the last 3 of 12 rounds of big allocations, in a fresh process after ``setup``."""
    code = _FAULTS_OF_A_BIG_TENSOR.format(where=str(where), setup=textwrap.dedent(setup))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return int(r.stdout.split()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc")
def test_loading_a_generated_model_keeps_freed_memory_for_the_next_call(tmp_path: Path) -> None:
    model, _ = costed(2)
    generate(model, branch_plan(model, 2)).write(tmp_path / "wide_mem.py")
    fresh_pages = 3 * (16 << 20) * 4 // 4096  # every page of the big tensor faulted in again, each round
    default = _steady_page_faults("", tmp_path)
    assert default >= fresh_pages
    assert (
        _steady_page_faults("import wide_mem; wide_mem.load(keep_memory=False).close()", tmp_path)
        >= fresh_pages
    )
    kept = _steady_page_faults("import wide_mem; wide_mem.load().close()", tmp_path)
    assert kept < fresh_pages // 10, (kept, default)


def test_failing_cluster_raises_in_caller_without_deadlock() -> None:
    model, _ = costed(4)
    ns = exec_generated(generate(model, branch_plan(model, 3)).source, "failing")
    weights = {k: torch.from_numpy(np.array(v)) for k, v in model.weights.items()}

    def broken(w: object, v: object, ev: object) -> None:
        raise RuntimeError("cluster 2 exploded")

    ns["CLUSTERS"] = (*ns["CLUSTERS"][:2], broken, *ns["CLUSTERS"][3:])
    x = torch.from_numpy(random_inputs(model)["input"])
    with ns["ParallelModel"](weights) as par, pytest.raises(RuntimeError, match="cluster 2 exploded"):
        par(input=x)
    # the workers were shut down cleanly by the context manager
    assert all(not t.is_alive() for t in par._threads)


def test_a_workers_torch_thread_count_survives_counts_set_on_other_threads() -> None:
    """torch gives a thread, at its first parallel op, the count last set on any thread; a worker pins its
    own first, so the caller setting its count (as each call does) cannot change the workers'."""
    model, _ = costed(2)
    ns = exec_generated(generate(model, branch_plan(model, 2)).source, "pinned")
    worker = ns["_Worker"](1, "reflow-test-worker")
    seen: list[int] = []

    def run(fn: Any) -> None:
        state = {"errors": [], "ev": {}, "done": threading.Semaphore(0)}
        worker.jobs.put((fn, (), state))
        state["done"].acquire()

    before = torch.get_num_threads()
    try:
        run(lambda: None)  # the worker has started and set its count
        torch.set_num_threads(3)
        run(lambda: seen.append(torch.get_num_threads()))
    finally:
        torch.set_num_threads(before)
        worker.close()
    assert seen == [1]


def test_batch_mode_splits_the_batch() -> None:
    """Batch mode runs one slice's graph (batch 2) on each half of a batch of 4."""
    whole, proto = costed(2, batch=4)
    model, _ = costed(2, batch=2)
    x = random_inputs(whole, seed=3)
    (ref,) = ort_run(proto, x)  # type: ignore[arg-type]
    total = model.graph.total_cost()
    plan = Plan(
        model.graph,
        (tuple(n.name for n in model.graph if n.op.startswith("onnx.")),),
        2,
        "batch",
        1,
        2,
        total,
        total / 2,
        total,
        1,
        len(model.graph),
    )
    code = generate(model, plan)
    ns = exec_generated(code.source, "batch")
    with ns["ParallelModel"]({k: torch.from_numpy(np.array(v)) for k, v in code.weights.items()}) as par:
        out = par(input=torch.from_numpy(x["input"]))["output"].numpy()
    assert out.shape == ref.shape
    assert rel_err(ref, out) < 1e-4


def test_generated_code_is_readable() -> None:
    model, _ = costed(2)
    src = generate(model, branch_plan(model, 2)).source
    assert "def cluster_0_" in src and "def forward_serial(" in src
    assert "predicted cost" in src and "# b0_br1_0: Conv" in src
    assert "_wait(v, ev, " in src and "_publish(v, ev, " in src
    assert "import reflow" not in src


def test_clones_run_in_their_cluster_before_the_consumers() -> None:
    """A clone recomputes its value locally, placed where its original would run; nothing waits for it."""
    from dataclasses import replace

    model, proto = costed(2)
    plan = branch_plan(model, 2)
    g = plan.graph.copy()
    original = g.node("b0_proj_relu")
    g.add_node(replace(original, name="b0_proj_relu@1", attrs={**original.attrs, "clone_of": "b0_proj_relu"}))
    for e in g.in_edges("b0_proj_relu"):
        g.connect(e.src, e.src_port, "b0_proj_relu@1", e.dst_port, e.size)
    clusters = (plan.clusters[0], (*plan.clusters[1], "b0_proj_relu@1"))  # the clone listed last on purpose
    cloned = replace(plan, graph=g, clusters=clusters)
    code = generate(model, cloned)
    assert "b0_proj_r" not in code.source.split("CROSS_VALUES = ")[1].split("\n")[0]
    ns = exec_generated(code.source, "clones")
    x = random_inputs(model, seed=4)
    (ref,) = ort_run(proto, x)  # type: ignore[arg-type]
    with ns["ParallelModel"]({k: torch.from_numpy(np.array(v)) for k, v in code.weights.items()}) as par:
        out = par(input=torch.from_numpy(x["input"]))["output"].numpy()
    assert rel_err(ref, out) < 1e-4


def test_batch_mode_on_a_light_model_with_a_literal_reshape() -> None:
    """set_batch makes the light models' literal Reshape batch inferred, so batch slices run the same code."""
    from reflow.onnx.models import light_model

    proto = light_model("inception_v1", batch=4)
    model = import_model(light_model("inception_v1", batch=2))
    model = apply_costs(model, flop_costs(model))
    total = model.graph.total_cost()
    compute = (tuple(n.name for n in model.graph if n.op.startswith("onnx.")),)
    code = generate(
        model, Plan(model.graph, compute, 2, "batch", 1, 2, total, total / 2, total, 1, len(compute[0]))
    )
    x = random_inputs(import_model(proto), seed=5)
    (ref,) = ort_run(proto, x)
    ns = exec_generated(code.source, "sq_batch")
    with ns["ParallelModel"]({k: torch.from_numpy(np.array(v)) for k, v in code.weights.items()}) as par:
        out = par(data_0=torch.from_numpy(x["data_0"]))[model.outputs[0].name].numpy()
    assert rel_err(ref, out) < 1e-4


@pytest.mark.parametrize("mode", ["clusters", "serial"])
def test_the_callers_thread_runs_the_first_cluster_with_the_plans_thread_count(mode: str) -> None:
    """The first cluster (and the serial reference) run on the caller's thread, so that no idle thread of
    the model owns an OpenMP team; they run with the plan's torch thread count, and the caller gets its own
    count back."""
    model, proto = costed(2)
    x = random_inputs(model, seed=4)
    (ref,) = ort_run(proto, x)  # type: ignore[arg-type]
    code = generate(model, branch_plan(model, 2))
    ns = exec_generated(code.source, "caller")
    ns["SERIAL_THREADS"], ns["INTRA_OP_THREADS"] = 2, 1
    seen: list[tuple[str, int]] = []
    first, forward = ns["CLUSTERS"][0], ns["forward_serial"]

    def spy(fn: Any) -> Any:
        def run(*args: Any) -> Any:
            seen.append((threading.current_thread().name, torch.get_num_threads()))
            return fn(*args)

        return run

    ns["CLUSTERS"] = (spy(first), *ns["CLUSTERS"][1:])
    ns["forward_serial"] = spy(forward)
    before = torch.get_num_threads()
    torch.set_num_threads(3)
    try:
        with ns["ParallelModel"]({k: torch.from_numpy(np.array(v)) for k, v in code.weights.items()}) as par:
            run = par if mode == "clusters" else par.serial
            out = run(input=torch.from_numpy(x["input"]))["output"]
            after = torch.get_num_threads()
    finally:
        torch.set_num_threads(before)
    assert rel_err(ref, out.numpy()) < 1e-4
    assert seen == [(threading.current_thread().name, 1 if mode == "clusters" else 2)]
    assert after == 3
    assert len(par._threads) == 1  # one worker, for the second cluster
