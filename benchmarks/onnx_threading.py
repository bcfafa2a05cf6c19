"""Claim: a generated model runs fastest on the caller's thread, with no other OpenMP team in the process.

Each thread that runs torch ops on several threads owns an OpenMP team, and libgomp stops spinning between
parallel regions once the teams of a process hold more threads than there are cores: every op then has to
wake its helper threads. The generated runtime therefore runs the first cluster on the caller's thread (until
round 8 of issue 18 every cluster ran on a worker thread, and the serial reference on a thread of its own).
Teams outlive the ops that made them, so each way runs in processes of its own, alternating: the generated
serial code of each model on P torch threads, timed in its steady state (reflow.onnx.timing),

* ``worker``           on a worker thread (the runtime before round 8), no other team in the process;
* ``worker, 2 teams``  the same after the main thread ran one op on P threads (the user's own torch work, or
                       the serial reference's thread of that runtime);
* ``caller``           on the main thread, the caller's (the runtime now);
* ``caller, 2 teams``  the same while another thread that ran one op on P threads is alive;
* ``caller, count switched``  on the main thread, whose own count is 1: each call sets P and restores 1
                       (``onnx_torch_threads``, as the runtime does where the caller's count differs from the
                       plan's).

A fifth kind of process times torch's thread-count quirk: a worker thread that sets 1 thread before its first
parallel op gets, at that op, the count last set on any thread (``unpinned``), unless it makes that first
initialisation before it sets its count (``pinned``, as the runtime's ``_pin_torch_threads`` does); the CPU
time per call over the wall time says how many cores it kept busy. Writes results/onnx_threading.json.

    .venv/bin/python benchmarks/onnx_threading.py --models mobilenet_v2 resnet18 googlenet --batch 1
"""

from __future__ import annotations

import argparse
import functools
import json
import queue
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar, cast

import torch
from onnx_parallel import make_model

from reflow.onnx.pipeline import parallelize
from reflow.onnx.processes import load_module
from reflow.onnx.timing import steady_medians

T = TypeVar("T")

WAYS = ("worker", "worker, 2 teams", "caller", "caller, 2 teams", "caller, count switched")


class Thread:
    """A thread that runs the functions handed to it, one at a time, with ``threads`` torch threads."""

    def __init__(self, threads: int, pin: bool = True) -> None:
        self.jobs: queue.SimpleQueue[Callable[[], object] | None] = queue.SimpleQueue()
        self.done: queue.SimpleQueue[object] = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._loop, args=(threads, pin), daemon=True)
        self.thread.start()

    def _loop(self, threads: int, pin: bool) -> None:
        if pin:
            torch.get_num_threads()
        torch.set_num_threads(threads)
        while (job := self.jobs.get()) is not None:
            with torch.inference_mode():
                self.done.put(job())

    def run(self, fn: Callable[[], T]) -> T:
        self.jobs.put(fn)
        return cast(T, self.done.get())


def one_op() -> object:
    """An op big enough for torch to run it on every thread it has: it gives the thread a team."""
    return torch.randn(1 << 22).exp_()


def child(way: str, module: str, batch: int, threads: int, calls: int) -> dict[str, float]:
    """One way, timed in this (fresh) process: seconds per call, or wall and CPU seconds for "pinning"."""
    mod = load_module(Path(module))
    mod.onnx_keep_freed_memory()
    raw = torch.load(Path(module).with_suffix(".pt"), weights_only=True)
    x = mod.random_inputs(seed=1)

    def prepared() -> Callable[[], dict[str, torch.Tensor]]:
        w = mod.prepare_weights(raw, batch)  # packed for the running thread's count
        return lambda: mod.forward_serial(w, x)

    if way == "pinning":
        torch.get_num_threads()
        out: dict[str, float] = {}
        for pin in (False, True):
            worker = Thread(1, pin=pin)
            worker.run(lambda: None)  # started, its count set
            torch.set_num_threads(threads)  # then the caller sets its own
            forward = worker.run(prepared)  # the worker's first parallel ops
            call: Callable[[], object] = functools.partial(worker.run, forward)
            call()
            wall, cpu = time.perf_counter(), time.process_time()
            for _ in range(calls):
                call()
            name = "pinned" if pin else "unpinned"
            out[f"{name}_wall"] = (time.perf_counter() - wall) / calls
            out[f"{name}_cpu"] = (time.process_time() - cpu) / calls
        return out
    if way.startswith("worker"):
        if way.endswith("2 teams"):
            torch.set_num_threads(threads)
            one_op()
        worker = Thread(threads)
        forward = worker.run(prepared)
        call = functools.partial(worker.run, forward)
    else:
        if way.endswith("2 teams"):
            Thread(threads).run(one_op)  # the thread stays alive, with its team
        torch.get_num_threads()
        torch.set_num_threads(threads)
        with torch.inference_mode():
            forward = prepared()

        if way.endswith("switched"):
            torch.set_num_threads(1)

        def call() -> object:  # the runtime's own way of running on the caller's thread
            with mod.onnx_torch_threads(threads), torch.inference_mode():
                return forward()

    t, _ = steady_medians({way: call}, calls)
    return t


def run_child(way: str, module: Path, batch: int, threads: int, calls: int) -> dict[str, float]:
    cmd = [sys.executable, __file__, "--child", way, str(module), str(batch), str(threads), str(calls)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    if r.returncode != 0:
        raise RuntimeError(f"the timing process for {way!r} failed:\n{r.stderr}")
    result: dict[str, float] = json.loads(r.stdout.strip().splitlines()[-1])
    return result


def bench_model(name: str, batch: int, threads: int, processes: int, calls: int, tmp: Path) -> dict[str, Any]:
    py, _ = parallelize(make_model(name, batch), workers=1, profile_ops=False).code.write(tmp / f"{name}.py")
    times: dict[str, list[float]] = {w: [] for w in WAYS}
    for _ in range(processes):
        for way in WAYS:
            times[way].append(run_child(way, py, batch, threads, calls)[way])
    pin = run_child("pinning", py, batch, threads, calls)
    return {
        "model": name,
        "batch": batch,
        "threads": threads,
        "times_ms": {w: statistics.median(v) * 1e3 for w, v in times.items()},
        "cores_busy": {k: pin[f"{k}_cpu"] / pin[f"{k}_wall"] for k in ("unpinned", "pinned")},
        "one_thread_worker_ms": {k: pin[f"{k}_wall"] * 1e3 for k in ("unpinned", "pinned")},
    }


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        way, module, *numbers = argv[1:]
        batch, threads, n = (int(v) for v in numbers)
        print(json.dumps(child(way, module, batch, threads, n)))
        return 0
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="*", default=["mobilenet_v2", "resnet18", "googlenet"])
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--processes", type=int, default=2, help="processes per way and model")
    p.add_argument("--calls", type=int, default=24)
    p.add_argument("--quick", action="store_true", help="one model, one process per way, fewer calls")
    p.add_argument("--out", default="results")
    a = p.parse_args(argv)
    models, processes, calls = (a.models[:1], 1, 8) if a.quick else (a.models, a.processes, a.calls)
    rows = []
    with tempfile.TemporaryDirectory(prefix="reflow-threading-") as d:
        for name in models:
            r = bench_model(name, a.batch, a.threads, processes, calls, Path(d))
            rows.append(r)
            t, busy = r["times_ms"], r["cores_busy"]
            print(
                f"{name:16} batch {a.batch}, {a.threads} threads: "
                + "  ".join(f"{k} {v:.2f} ms" for k, v in t.items())
                + f"  | cores a 1-thread worker keeps busy: unpinned {busy['unpinned']:.2f}"
                + f", pinned {busy['pinned']:.2f}",
                flush=True,
            )
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "onnx_threading.json").write_text(json.dumps(rows, indent=2))
    print(f"wrote {out / 'onnx_threading.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
