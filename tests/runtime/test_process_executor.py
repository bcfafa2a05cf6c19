"""The process executor: the same trace as threads (processes, or a mix), crashes named, nothing leaked."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from multiprocessing import resource_tracker
from typing import Any

import numpy as np
import pytest
from process_programs import Fan, ThreadProbe, Unsendable

from reflow.errors import UnsendableValue, WorkerCrashed
from reflow.reactor import reaction_graph_of, run
from reflow.runtime import ThreadExecutor
from reflow.runtime.placement import LOCAL, place
from reflow.runtime.process_executor import ProcessExecutor
from reflow.transport import leaked_segments
from reflow.transport.shm import process_alive

TAGS = 5


@pytest.fixture(autouse=True, scope="module")
def _resource_tracker() -> None:
    """Start multiprocessing's long-lived resource tracker before ``no_leaks`` takes its first census."""
    resource_tracker.ensure_running()


def comparable(trace: list[Any]) -> list[Any]:
    """A trace with arrays replaced by (dtype, shape, bytes), so traces compare exactly."""
    def norm(v: Any) -> Any:
        return (v.dtype.str, v.shape, v.tobytes()) if isinstance(v, np.ndarray) else v
    return [(e.tag, e.reaction, tuple((k, norm(v)) for k, v in e.writes)) for e in trace]


def test_same_trace_with_threads_processes_and_a_mix(no_leaks: None) -> None:
    reference = run(Fan(3), executor=ThreadExecutor(1), timeout=TAGS, trace=True)
    oracle = comparable(reference.trace)
    assert len(oracle) == (TAGS + 1) * 5  # gen, 3 stages, sink at each tag
    threaded = run(Fan(3), executor=ThreadExecutor(3), timeout=TAGS, trace=True)
    assert comparable(threaded.trace) == oracle
    procs = ProcessExecutor(2)
    assert comparable(run(Fan(3), executor=procs, timeout=TAGS, trace=True).trace) == oracle
    assert set(procs.placement.values()) == {0, 1}
    # the generator's 400 KB arrays reach the stages through the scheduler, which forwards, never copies
    assert sum(s.forwarded for s in procs.channel_stats) >= TAGS
    assert sum(s.stored for s in procs.channel_stats) == 0
    mixed = ProcessExecutor(2, local=["main", "main.stages[1]"])
    main = Fan(3)
    assert comparable(run(main, executor=mixed, timeout=TAGS, trace=True).trace) == oracle
    assert mixed.placement["main.stages[1]"] == LOCAL
    assert main.stages[1].total == reference_total(TAGS, 1)  # local state lives here
    assert main.totals == [reference_total(TAGS, k) for k in range(3)]


def reference_total(tags: int, k: int) -> float:
    base = np.arange(50_000, dtype=np.float64)
    return float(sum((base * n)[:: k + 1].sum() for n in range(1, tags + 2)))


@pytest.mark.parametrize(("workers", "threads"), [(2, None), (1, None), (2, 2)])
def test_workers_are_capped_to_their_share_of_the_cores(workers: int, threads: int | None, no_leaks: None,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """P workers each running torch must not start a thread per core each: P times too many threads."""
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        monkeypatch.delenv(name, raising=False)
    ex = ProcessExecutor(workers, threads_per_worker=threads)
    result = run(ThreadProbe(), executor=ex, trace=True)
    cores = os.cpu_count() or 1
    cap = threads or max(1, cores // workers)
    assert sorted(set(ex.placement.values())) == list(range(workers))
    assert [v for e in result.trace for _, v in e.writes] == [(str(cap), min(cap, cores))] * 2
    assert "OMP_NUM_THREADS" not in os.environ  # the caps are for the workers, not for this process


def test_a_thread_cap_the_user_set_is_kept(no_leaks: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    result = run(ThreadProbe(), executor=ProcessExecutor(2, threads_per_worker=1), trace=True)
    assert [v for e in result.trace for _, v in e.writes] == [("2", 2)] * 2


def test_killed_worker_stops_the_program_naming_the_reactor(no_leaks: None) -> None:
    main = Fan(2, crash=True)
    ex = ProcessExecutor(2, local=["main", "main.gen", "main.stages[0]", "main.stages[1]"])
    with pytest.raises(WorkerCrashed, match=r"main\.crasher") as info:
        run(main, executor=ex, timeout=TAGS)
    assert "exit code -9" in str(info.value)


@pytest.mark.parametrize("local", [(), ("main.pointer",)])
def test_a_value_that_cannot_be_sent_names_the_reaction_and_port(local: tuple[str, ...], no_leaks: None,
                                                                  capfd: pytest.CaptureFixture[str]) -> None:
    """Written in a worker, or written locally and sent to a worker: a reflow error, never a dead worker."""
    with pytest.raises(UnsendableValue, match="cannot be sent between processes") as info:
        run(Unsendable(), executor=ProcessExecutor(2, local=local), timeout=5)
    if local:
        assert "the value on port main.ints.in, read by reaction main.ints.count" in str(info.value)
        assert (info.value.reaction, info.value.port) == ("main.ints.count", "main.ints.in")
    else:
        assert "reaction main.pointer.emit wrote to port main.pointer.out" in str(info.value)
        assert (info.value.reaction, info.value.port) == ("main.pointer.emit", "main.pointer.out")
    assert "LP_c_int" in str(info.value)
    captured = capfd.readouterr()  # the workers lived on to run the shutdown reactions
    # the failed reaction's writes are dropped in the worker; written locally, the array still went out
    assert f"main.arrays saw {2 if local else 1}" in captured.out and "Traceback" not in captured.err


def test_placement_spreads_heavy_work_and_keeps_cheap_chains_together() -> None:
    graph = reaction_graph_of(Fan(5))
    cheap = place(graph, 3)
    heavy_graph = graph.with_costs({n.name: 1e-3 if "stages" in n.name else 1e-5 for n in graph})
    heavy = place(heavy_graph, 3)
    assert heavy == place(heavy_graph, 3)  # a pure function of the graph
    assert {heavy[f"main.stages[{i}]"] for i in range(5)} == {0, 1, 2}  # 5 ms of stages spread over 3
    # 10 us reactions are cheaper than a message: the critical chain gen -> stage 0 -> sink stays together
    assert cheap["main.gen"] == cheap["main.stages[0]"] == cheap["main"]
    assert place(graph, 2, local=["main.gen"])["main.gen"] == LOCAL
    with pytest.raises(ValueError, match="not in the program"):
        place(graph, 2, local=["main.nope"])


def test_ctrl_c_releases_workers_and_shared_memory(no_leaks: None) -> None:
    here = os.path.dirname(__file__)
    code = "import process_programs as p; p.run_until_interrupted()"
    child = subprocess.Popen([sys.executable, "-c", code], cwd=here, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        workers = [int(x) for x in child.stdout.readline().split()]
        assert len(workers) == 2
        time.sleep(0.2)
        child.send_signal(signal.SIGINT)
        for w in workers:
            os.kill(w, signal.SIGINT)  # a terminal's Ctrl-C reaches the whole process group
        assert child.wait(30) == 130
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    deadline = time.monotonic() + 5
    while any(process_alive(w) for w in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [w for w in workers if process_alive(w)]
    assert leaked_segments(child.pid) == [] and all(leaked_segments(w) == [] for w in workers)

