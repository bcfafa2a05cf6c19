"""Claim: the Ray executor's per-tag coordination costs what its round trips cost and no more: on one node
about what the process executor costs (the same shared-memory channels, behind Ray actors), across nodes
about one actor call per level of a tag, in line with the same pipeline written as plain Ray actors.

A chain program: ``Source`` (a timer) -> ``STAGES`` pass-through ``Stage`` reactors -> a ``Clock`` kept in
this process, so a tag has ``STAGES + 1`` levels, each one round of the executor. The payload is a small
int or a 1 MB array. Systems, in one process run, interleaved (one run of every system per round):

* ``1 thread``          ``ThreadExecutor(1)``: everything in this process, nothing moves (the floor);
* ``processes``         ``ProcessExecutor(2)``: the reactors in two worker processes over shared memory;
* ``ray, 1 node``       ``RayExecutor(nodes=1, groups_per_node=2)``: the same placement, the groups are Ray
                        actors on this node, reached over the same shared-memory channels;
* ``ray, 2 nodes``      ``RayExecutor`` with source and stages pinned to the second node of the local
                        cluster: each level is one actor call to that node's agent (values as object refs
                        from 100 KB);
* ``actors, node N``    the same chain as plain Ray actors (one per reactor) on node N: per tag, each
                        stage's method takes the previous one's ObjectRef, then one ``ray.get``.

The Ray systems run on a two-node ``LocalCluster`` (two raylets and object stores on this machine, one CPU
each). Time per tag = the span between the first and the last tag's result reaching the clock, over the
number of tags less one (start-up not counted); the median over interleaved repeats. Overhead = per-tag time
less the 1-thread floor. Scheduler CPU per tag = CPU time of this process over the same span
(``time.process_time``, all its threads): the part of a tag's cost that is serial in the coordinator and
grows with the number of nodes it calls.

    flock -x /tmp/reflow-cpu.lock .venv/bin/python benchmarks/ray_overhead.py [--quick]

Writes results/ray_overhead.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from reflow.reactor import Reactor, reaction, run
from reflow.runtime import ThreadExecutor
from reflow.runtime.process_executor import ProcessExecutor
from reflow.runtime.ray_cluster import LocalCluster, NodeInfo, affinity, connect, nodes
from reflow.runtime.ray_executor import RayExecutor

STAGES = 3
PAYLOADS = {"int": 0, "1 MB": 1 << 20}


class Source(Reactor):
    def __init__(self, size: int) -> None:
        super().__init__("source")
        self.size = size
        self.t = self.timer("t", 0, 1)
        self.out = self.output("out")
        self.n = 0

    @reaction(triggers="t", effects="out")
    def make(self) -> None:
        self.n += 1
        self.out.set(np.full(self.size, self.n % 251, np.uint8) if self.size else self.n)


class Stage(Reactor):
    def __init__(self) -> None:
        super().__init__("stage")
        self.inp = self.input("in")
        self.out = self.output("out")

    @reaction(triggers="in", effects="out")
    def pass_on(self) -> None:
        self.out.set(self.inp.get())


class Clock(Reactor):
    """Notes when each tag's result arrives (kept in this process: ``local=``)."""

    def __init__(self) -> None:
        super().__init__("clock")
        self.inp = self.input("in")
        self.stamps: list[tuple[float, float]] = []

    @reaction(triggers="in")
    def note(self) -> None:
        self.stamps.append((time.perf_counter(), time.process_time()))


class Chain(Reactor):
    def __init__(self, size: int) -> None:
        super().__init__("main")
        self.source = self.add(Source(size))
        self.stages = self.bank("stages", STAGES, lambda i: Stage())
        self.clock = self.add(Clock())
        previous = self.source.out
        for s in self.stages:
            self.connect(previous, s.inp)
            previous = s.out
        self.connect(previous, self.clock.inp)


def per_tag(executor: Any, size: int, tags: int) -> tuple[float, float]:
    """Wall seconds per tag, and CPU seconds per tag of this (the scheduler's) process."""
    chain = Chain(size)
    run(chain, executor=executor, timeout=tags - 1)
    stamps = chain.clock.stamps
    if len(stamps) != tags:
        raise RuntimeError(f"expected {tags} results, got {len(stamps)}")
    return ((stamps[-1][0] - stamps[0][0]) / (tags - 1), (stamps[-1][1] - stamps[0][1]) / (tags - 1))


def plain_actors(node: NodeInfo) -> Callable[[int, int], tuple[float, float]]:
    """The chain as plain Ray actors on ``node``: refs passed along, one ``ray.get`` per tag."""
    import ray

    class SourceActor:
        def make(self, size: int, n: int) -> Any:
            return np.full(size, n % 251, np.uint8) if size else n

    class StageActor:
        def pass_on(self, value: Any) -> Any:
            return value

    where = {"num_cpus": 0, "scheduling_strategy": affinity(node.node_id)}
    source = ray.remote(SourceActor).options(**where).remote()
    stages = [ray.remote(StageActor).options(**where).remote() for _ in range(STAGES)]

    def per_tag_actors(size: int, tags: int) -> tuple[float, float]:
        def one(n: int) -> Any:
            ref = source.make.remote(size, n)
            for s in stages:
                ref = s.pass_on.remote(ref)
            return ray.get(ref)

        one(0)  # warm-up
        t0, c0 = time.perf_counter(), time.process_time()
        for n in range(tags):
            one(n)
        return (time.perf_counter() - t0) / tags, (time.process_time() - c0) / tags

    return per_tag_actors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="2 repeats, fewer tags")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--tags", type=int, default=200,
                        help="tags per run with the int (a quarter of them with 1 MB)")
    parser.add_argument("--out", type=Path, default=Path("results"))
    args = parser.parse_args()
    repeats, tags = (2, 60) if args.quick else (args.repeats, args.tags)
    local = ["main.clock"]
    with LocalCluster(nodes=2, cpus_per_node=1, object_store_mb=256) as cluster, \
            connect(cluster.address, log_to_driver=False):
        here, there = nodes()
        remote = {"main.source": 1, "main.stages": 1}
        systems: dict[str, Callable[[int, int], tuple[float, float]]] = {
            "1 thread": lambda size, t: per_tag(ThreadExecutor(1), size, t),
            "processes": lambda size, t: per_tag(ProcessExecutor(2, local=local), size, t),
            "ray, 1 node": lambda size, t: per_tag(RayExecutor(nodes=1, groups_per_node=2, local=local),
                                                   size, t),
            "ray, 2 nodes": lambda size, t: per_tag(RayExecutor(pin=remote, local=local), size, t),
            "actors, node 0": plain_actors(here),
            "actors, node 1": plain_actors(there),
        }
        rows = []
        for label, size in PAYLOADS.items():
            n = tags if size == 0 else max(10, tags // 4)
            times: dict[str, list[float]] = {name: [] for name in systems}
            cpu: dict[str, list[float]] = {name: [] for name in systems}
            for _ in range(repeats):
                for name, system in systems.items():
                    wall, busy = system(size, n)
                    times[name].append(wall)
                    cpu[name].append(busy)
            med = {name: statistics.median(ts) for name, ts in times.items()}
            rows.append({"payload": label, "tags": n, "per_tag_s": med, "all_s": times,
                         "driver_cpu_per_tag_s": {name: statistics.median(c) for name, c in cpu.items()}})
            print(f"{label}: " + ", ".join(f"{k} {v * 1e3:.3f} ms" for k, v in med.items()), flush=True)
    names = list(systems)
    print(f"\nper tag (ms), median of {repeats}; {STAGES + 1} levels per tag")
    print(f"{'payload':>8}" + "".join(f"{n:>16}" for n in names))
    for r in rows:
        print(f"{r['payload']:>8}" + "".join(f"{r['per_tag_s'][n] * 1e3:>16.3f}" for n in names))
    print("\nratios of medians")
    for r in rows:
        t = r["per_tag_s"]
        r["ratios"] = {"ray 1 node / processes": t["ray, 1 node"] / t["processes"],
                       "ray 2 nodes / actors node 1": t["ray, 2 nodes"] / t["actors, node 1"],
                       "ray 2 nodes / ray 1 node": t["ray, 2 nodes"] / t["ray, 1 node"]}
        r["overhead_per_level_s"] = {k: (t[k] - t["1 thread"]) / (STAGES + 1)
                                     for k in names if k != "1 thread"}
        print(f"{r['payload']:>8}: " + ", ".join(f"{k} {v:.2f}x" for k, v in r["ratios"].items()))
        print(f"{'':>8}  overhead per level (us): " + ", ".join(
            f"{k} {v * 1e6:.0f}" for k, v in r["overhead_per_level_s"].items()))
        print(f"{'':>8}  scheduler (driver) CPU per tag (us): " + ", ".join(
            f"{k} {v * 1e6:.0f}" for k, v in r["driver_cpu_per_tag_s"].items()))
    args.out.mkdir(parents=True, exist_ok=True)
    out = args.out / "ray_overhead.json"
    out.write_text(json.dumps({"machine": platform.platform(), "cpus": os.cpu_count(), "stages": STAGES,
                               "repeats": repeats, "rows": rows}, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
