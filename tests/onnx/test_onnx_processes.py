"""The process runtime: a generated module's clusters (or batch slices) in worker processes.

onnxruntime is the oracle for what the processes compute; the process table and /dev/shm are checked for
leftovers after a normal close, an error in a cluster, a worker killed between calls and one that dies in
the middle of a call, and after the parent itself dies.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from onnx_oracle import ort_run, rel_err
from test_onnx_codegen import branch_plan, costed

from reflow.errors import WorkerCrashed
from reflow.onnx import ImportedModel, import_model
from reflow.onnx.codegen import generate
from reflow.onnx.costmodel import random_inputs
from reflow.onnx.graph_compiler import for_graph_compiler
from reflow.onnx.plan import Plan
from reflow.onnx.processes import ProcessModel, faster_runtime, load_module
from reflow.transport.shm import leaked_segments, process_alive, unlink_segments_of

pytestmark = pytest.mark.timeout(300)

# appended to a generated module: cluster 1 fails (or its process dies) when the input's first element is
# negative; the probe run at load uses random inputs in [0, 1), so the model loads
SABOTAGE = """

_cluster_1 = CLUSTERS[1]


def _sabotaged(w, v, ev):
    if float(v["input"].flatten()[0]) < 0:
        if float(v["input"].flatten()[0]) < -100:
            import os

            os._exit(7)
        raise ArithmeticError("cluster 1 refuses negative inputs")
    return _cluster_1(w, v, ev)


CLUSTERS = (CLUSTERS[0], _sabotaged, *CLUSTERS[2:])
"""


def wide_module(tmp_path: Path, branches: int = 3, workers: int = 2, extra: str = "") -> tuple[Path, object]:
    model, proto = costed(branches)
    code = generate(model, branch_plan(model, workers))
    py, _ = code.write(tmp_path / f"wide{branches}_par.py")
    if extra:
        py.write_text(py.read_text() + extra)
    return py, proto


def assert_nothing_left(pids: list[int]) -> None:
    end = time.monotonic() + 10
    while any(process_alive(p) for p in pids) and time.monotonic() < end:
        time.sleep(0.05)
    assert not [p for p in pids if process_alive(p)], "worker processes left behind"
    assert leaked_segments(os.getpid()) == []


def test_clusters_in_processes_match_onnxruntime(tmp_path: Path) -> None:
    py, proto = wide_module(tmp_path, branches=5, workers=3)
    with ProcessModel(py) as model:
        pids = model.pids
        assert len(pids) == 3 and all(process_alive(p) for p in pids)
        for seed in range(3):  # repeated calls on new inputs: no value of an earlier call is read
            x = random_inputs(import_of(proto), seed=seed)
            (ref,) = ort_run(proto, x)  # type: ignore[arg-type]
            out = model(input=torch.from_numpy(x["input"]))["output"].numpy()
            assert rel_err(ref, out) < 1e-4
    assert_nothing_left(pids)


def import_of(proto: object) -> ImportedModel:
    return import_model(proto)  # type: ignore[arg-type]


@pytest.mark.parametrize("compiled", [False, True])
def test_batch_slices_in_processes_match_onnxruntime(tmp_path: Path, compiled: bool) -> None:
    """Each worker runs its slice of the batch through the whole graph, eagerly or compiled (each worker
    compiles its own graph at start)."""
    whole, proto = costed(2, batch=4)
    model, _ = costed(2, batch=2)
    model = for_graph_compiler(model) if compiled else model
    total = model.graph.total_cost()
    compute = tuple(n.name for n in model.graph if n.op.startswith("onnx."))
    plan = Plan(model.graph, (compute,), 2, "batch", 1, 2, total, total / 2, total, 1, len(model.graph))
    py, _ = generate(model, plan, compile=compiled).write(tmp_path / "batch_par.py")
    x = random_inputs(whole, seed=3)
    (ref,) = ort_run(proto, x)  # type: ignore[arg-type]
    with ProcessModel(py) as par:
        pids = par.pids
        assert len(pids) == 2
        out = par(input=torch.from_numpy(x["input"]))["output"].numpy()
    assert out.shape == ref.shape
    assert rel_err(ref, out) < 1e-4
    assert_nothing_left(pids)


def test_a_worker_killed_between_calls_is_reported_and_everything_is_freed(tmp_path: Path) -> None:
    py, proto = wide_module(tmp_path)
    model = ProcessModel(py)
    pids = model.pids
    os.kill(pids[1], signal.SIGKILL)
    x = torch.from_numpy(random_inputs(import_of(proto))["input"])
    with pytest.raises(WorkerCrashed, match=rf"cluster 1 .*pid {pids[1]}"):
        model(input=x)
    assert_nothing_left(pids)  # the crash itself stopped the other worker and unlinked the segment
    with pytest.raises(RuntimeError, match="closed"):
        model(input=x)
    model.close()  # a second close is harmless


def test_a_worker_that_dies_in_the_middle_of_a_call_does_not_hang_the_caller(tmp_path: Path) -> None:
    py, proto = wide_module(tmp_path, extra=SABOTAGE)
    x = random_inputs(import_of(proto))["input"].copy()
    x.reshape(-1)[0] = -1000.0  # cluster 1's process exits while cluster 0 waits for its values
    model = ProcessModel(py)
    pids = model.pids
    with pytest.raises(WorkerCrashed, match="exit code 7"):
        model(input=torch.from_numpy(x))
    assert_nothing_left(pids)


@pytest.mark.parametrize("ending", ["SIGKILL", "exit without close"])
def test_workers_go_when_their_parent_does(tmp_path: Path, ending: str) -> None:
    py, _ = wide_module(tmp_path)
    last = "os.kill(os.getpid(), 9)" if ending == "SIGKILL" else "sys.exit(0)"
    script = textwrap.dedent(f"""
        import os, sys
        from reflow.onnx.processes import ProcessModel
        if __name__ == "__main__":
            m = ProcessModel({str(py)!r})
            print(" ".join(map(str, m.pids)), flush=True)
            {last}
    """)
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    out, _ = parent.communicate(timeout=240)
    assert parent.returncode == (-9 if ending == "SIGKILL" else 0)
    pids = [int(p) for p in out.split()]
    assert len(pids) == 2
    end = time.monotonic() + 10
    while (leaked_segments(parent.pid) or any(map(process_alive, pids))) and time.monotonic() < end:
        time.sleep(0.1)
    assert not [p for p in pids if process_alive(p)], "workers outlived their parent"
    # a SIGKILLed owner cannot unlink its segment; Python's resource tracker, which outlives it, does
    leaked = leaked_segments(parent.pid)
    unlink_segments_of(parent.pid)
    assert leaked == []


def test_the_generated_module_runs_its_clusters_in_processes(tmp_path: Path) -> None:
    model, _ = costed(3)
    code = generate(model, branch_plan(model, 2)).with_runtime("processes")
    py, _ = code.write(tmp_path / "wide_procs.py")
    mod = load_module(py)
    assert mod.RUNTIME == "processes"
    x = mod.random_inputs()
    with mod.load() as par, mod.load(runtime="threads") as ref:
        assert isinstance(par, ProcessModel)
        pids = par.pids
        np.testing.assert_array_equal(par(**x)["output"].numpy(), ref(**x)["output"].numpy())
    assert_nothing_left(pids)
    r = subprocess.run([sys.executable, str(py)], capture_output=True, text=True, timeout=240)
    assert r.returncode == 0 and "(processes)" in r.stdout and "speedup" in r.stdout, r.stderr


def test_faster_runtime_times_both_runtimes(tmp_path: Path) -> None:
    py, _ = wide_module(tmp_path)
    best, medians = faster_runtime(py, repeats=3)
    assert set(medians) == {"threads", "processes"} and all(t > 0 for t in medians.values())
    assert best == min(medians, key=lambda k: medians[k])
    assert leaked_segments(os.getpid()) == []


@pytest.fixture(scope="module")
def sabotaged(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ProcessModel, object]]:
    """One pool for the tests after which it stays usable (starting one spawns torch-importing workers).
    Only the module's last tests use it: the others check that this process owns no segment."""
    py, proto = wide_module(tmp_path_factory.mktemp("sabotaged"), extra=SABOTAGE)
    with ProcessModel(py) as model:
        yield model, proto
    assert_nothing_left(model.pids)


def test_an_error_in_a_cluster_is_raised_and_the_pool_stays_usable(
        sabotaged: tuple[ProcessModel, object]) -> None:
    model, proto = sabotaged
    x = random_inputs(import_of(proto), seed=1)["input"]
    (ref,) = ort_run(proto, {"input": x})  # type: ignore[arg-type]
    bad = torch.from_numpy(x.copy())
    bad.view(-1)[0] = -1.0
    with pytest.raises(ArithmeticError, match="refuses negative") as info:
        model(input=bad)
    assert any("cluster 1" in note for note in info.value.__notes__)  # names where it happened
    out = model(input=torch.from_numpy(x))["output"].numpy()  # the other cluster was not left waiting
    assert rel_err(ref, out) < 1e-4
    assert all(process_alive(p) for p in model.pids)


def test_bad_inputs_name_what_is_wrong(sabotaged: tuple[ProcessModel, object]) -> None:
    model, _ = sabotaged
    with pytest.raises(ValueError, match=r"input 'input': shape \(2, 3, 12, 12\)"):
        model(input=torch.zeros(2, 3, 12, 12))
    with pytest.raises(ValueError, match="takes inputs"):
        model(image=torch.zeros(1, 3, 12, 12))
    assert all(process_alive(p) for p in model.pids)
