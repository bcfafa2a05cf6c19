"""Claim: reactors in different worker processes pass large arrays at close to memcpy speed, because the
scheduler forwards them from the producer's shared-memory store instead of copying them.

A two-reactor program: ``Producer`` makes an array of ``size`` bytes at every tag, ``Consumer`` reads it. With
the process executor the array goes producer's worker -> scheduler -> consumer's worker. Systems, in one
process run, interleaved:

* ``reflow processes``: ``ProcessExecutor(2)`` as shipped (the scheduler forwards);
* ``reflow, scheduler copies``: the same with forwarding switched off in the scheduler, so it copies each
  array into its own store on the way, as it did before forwarding;
* ``reflow 1 thread``: ``ThreadExecutor(1)``: everything in this process, nothing moves (the floor);
* ``ray actors``: a producer actor's method returns the array, a consumer actor's method takes its
  ObjectRef (Ray's shared-memory object store, zero-copy reads), one ``ray.get`` per tag.

Time per tag = the span between the first and the last tag's result reaching a ``Clock`` reactor kept in
this process, over the number of tags less one, so process start-up is not counted; the median of
interleaved repeats. The memcpy bound is one in-process
copy of the array (the producer must write it somewhere shared).

    flock /tmp/reflow-bench.lock .venv/bin/python benchmarks/process_pipeline.py [--quick] [--no-ray]

Writes results/process_pipeline.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

import reflow.transport.pubsub as pubsub
from reflow.reactor import Reactor, reaction, run
from reflow.runtime import ThreadExecutor
from reflow.runtime.process_executor import ProcessExecutor

SIZES = {"1 MB": 1 << 20, "8 MB": 8 << 20, "32 MB": 32 << 20}


class Producer(Reactor):
    def __init__(self, size: int) -> None:
        super().__init__("producer")
        self.size = size
        self.t = self.timer("t", 0, 1)
        self.out = self.output("out")
        self.n = 0

    @reaction(triggers="t", effects="out")
    def make(self) -> None:
        self.n += 1
        self.out.set(np.full(self.size, self.n % 251, np.uint8))


class Consumer(Reactor):
    def __init__(self) -> None:
        super().__init__("consumer")
        self.inp = self.input("in")
        self.out = self.output("out")

    @reaction(triggers="in", effects="out")
    def take(self) -> None:
        self.out.set(int(self.inp.get()[:: 1 << 16].sum()))  # reads a little of it


class Clock(Reactor):
    """Notes when each tag's result arrives; kept in the scheduler's process (``local=``), so its notes
    are readable after the run (a trace would keep every array alive, and fill the workers' stores)."""

    def __init__(self) -> None:
        super().__init__("clock")
        self.inp = self.input("in")
        self.stamps: list[float] = []

    @reaction(triggers="in")
    def note(self) -> None:
        self.stamps.append(time.perf_counter())


class Pipe(Reactor):
    def __init__(self, size: int) -> None:
        super().__init__("main")
        self.producer = self.add(Producer(size))
        self.consumer = self.add(Consumer())
        self.clock = self.add(Clock())
        self.connect(self.producer.out, self.consumer.inp)
        self.connect(self.consumer.out, self.clock.inp)


def per_tag(executor: Any, size: int, tags: int) -> float:
    """Seconds per tag of ``Pipe(size)`` on ``executor``, from the first tag's end to the last's."""
    pipe = Pipe(size)
    run(pipe, executor=executor, timeout=tags - 1)
    stamps = pipe.clock.stamps
    if len(stamps) != tags:
        raise RuntimeError(f"expected {tags} results, got {len(stamps)}")
    return (stamps[-1] - stamps[0]) / (tags - 1)


def processes() -> ProcessExecutor:
    return ProcessExecutor(2, local=["main.clock"])


def copying_scheduler(size: int, tags: int) -> float:
    """``ProcessExecutor(2)`` with forwarding switched off in this (the scheduler's) process."""
    original = pubsub.locate
    pubsub.locate = lambda enc: None  # type: ignore[assignment]
    try:
        return per_tag(processes(), size, tags)
    finally:
        pubsub.locate = original


def ray_system(tags: int) -> Callable[[int, int], float]:
    import ray

    @ray.remote
    class RayProducer:
        def make(self, size: int, n: int) -> np.ndarray:
            return np.full(size, n % 251, np.uint8)

    @ray.remote
    class RayConsumer:
        def take(self, a: np.ndarray) -> int:
            return int(a[:: 1 << 16].sum())

    producer, consumer = RayProducer.remote(), RayConsumer.remote()  # type: ignore[attr-defined]

    def per_tag_ray(size: int, tags: int) -> float:
        ray.get(consumer.take.remote(producer.make.remote(size, 0)))  # warm-up
        t0 = time.perf_counter()
        for n in range(tags):
            ray.get(consumer.take.remote(producer.make.remote(size, n)))
        return (time.perf_counter() - t0) / tags

    return per_tag_ray


def memcpy_s(size: int) -> float:
    src, dst = np.ones(size, np.uint8), np.empty(size, np.uint8)
    times = []
    for _ in range(10):
        t0 = time.perf_counter()
        np.copyto(dst, src)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="1 and 8 MB, 2 repeats")
    parser.add_argument("--no-ray", action="store_true", help="leave out Ray")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--tags", type=int, default=30)
    parser.add_argument("--out", type=Path, default=Path("results"))
    args = parser.parse_args()
    sizes = {k: v for k, v in SIZES.items() if not args.quick or v <= 8 << 20}
    repeats = 2 if args.quick else args.repeats
    systems: dict[str, Callable[[int, int], float]] = {
        "reflow processes": lambda size, tags: per_tag(processes(), size, tags),
        "reflow, scheduler copies": copying_scheduler,
        "reflow 1 thread": lambda size, tags: per_tag(ThreadExecutor(1), size, tags),
    }
    if not args.no_ray:
        import ray

        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, logging_level="ERROR", log_to_driver=False)
        systems["ray actors"] = ray_system(args.tags)
    rows = []
    for label, size in tqdm(sizes.items(), desc="sizes"):
        times: dict[str, list[float]] = {name: [] for name in systems}
        bound = []
        for _ in range(repeats):
            bound.append(memcpy_s(size))
            for name, system in systems.items():
                times[name].append(system(size, args.tags))
        row = {"size": size, "label": label, "memcpy_s": statistics.median(bound),
               "per_tag_s": {name: statistics.median(ts) for name, ts in times.items()}}
        rows.append(row)
        tqdm.write(f"{label}: " + ", ".join(f"{k} {v * 1e3:.2f} ms" for k, v in row["per_tag_s"].items()))
    names = list(systems)
    print(f"\n{'size':>6}{'memcpy':>9}" + "".join(f"{n:>26}" for n in names) + f"{'x bound':>9}")
    for r in rows:
        t = r["per_tag_s"]
        print(f"{r['label']:>6}{r['memcpy_s'] * 1e3:>8.2f}m" + "".join(f"{t[n] * 1e3:>25.2f}m" for n in names)
              + f"{t['reflow processes'] / r['memcpy_s']:>9.2f}")
    args.out.mkdir(parents=True, exist_ok=True)
    out = args.out / "process_pipeline.json"
    out.write_text(json.dumps({"cpus": os.cpu_count(), "tags": args.tags, "repeats": repeats, "rows": rows},
                              indent=1))
    print(f"wrote {out} (times in ms per tag)")


if __name__ == "__main__":
    main()
