"""Claim: a reaction costs a few microseconds of scheduling on top of the work it does.

Measures the cost per reaction and per tag of reflow's deterministic scheduler on two shapes, and compares
in the same process run with the peers: a plain Python function call doing the same step, and a Ray actor
method call (the usual way to get stateful concurrent components in Python).

* chain: a timer drives a chain of ``DEPTH`` reactors, each adding one to its input (one reaction each per
  tag, all sequential);
* fan-out: a timer drives a bank of ``WIDTH`` reactors fed by one reaction (a batch of ``WIDTH`` independent
  reactions per tag), with 1 and 2 worker threads.

Variants are interleaved within each repeat; the table reports medians over repeats and the ratio to the
plain function call. Results go to results/reaction_overhead.json and results/reaction_overhead.png.

    flock /tmp/reflow-bench.lock .venv/bin/python benchmarks/reaction_overhead.py [--quick] [--no-ray]
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from tqdm import tqdm

import reflow.reactor
from reflow.reactor import Reactor, run

DEPTH = 10
WIDTH = 16


def programs(pkg: ModuleType) -> tuple[Any, Any]:
    """The benchmark's two shapes, ``Chain(depth)`` and ``Fan(width)``, built against reactor package
    ``pkg`` (``reflow.reactor``, or a base revision's for ``reaction_ab.py``)."""
    Base, reaction = pkg.Reactor, pkg.reaction

    class Stage(Base):  # type: ignore[misc, valid-type]
        def __init__(self, name: str = "stage") -> None:
            super().__init__(name)
            self.inp = self.input("in", int)
            self.out = self.output("out", int)

        @reaction(triggers="in", effects="out")
        def step(self) -> None:
            self.out.set(self.inp.get() + 1)

    class Chain(Base):  # type: ignore[misc, valid-type]
        def __init__(self, depth: int) -> None:
            super().__init__("main")
            self.t = self.timer("t", 0, 1)
            stages = self.bank("stages", depth, lambda i: Stage())
            self.first = stages[0]
            for a, b in itertools.pairwise(stages):
                self.connect(a.out, b.inp)
            self.n = 0

        @reaction(triggers="t", effects="stages[0].in")
        def feed(self) -> None:
            self.n += 1
            self.first.inp.set(self.n)

    class Fan(Base):  # type: ignore[misc, valid-type]
        def __init__(self, width: int) -> None:
            super().__init__("main")
            self.t = self.timer("t", 0, 1)
            self.members = self.bank("fan", width, lambda i: Stage())
            self.n = 0

        @reaction(triggers="t", effects="fan.in")
        def feed(self) -> None:
            self.n += 1
            for m in self.members:
                m.inp.set(self.n)

    return Chain, Fan


Chain, Fan = programs(reflow.reactor)


def time_reactor(make: Callable[[], Reactor], tags: int, workers: int) -> float:
    main = make()
    t0 = time.perf_counter()
    result = run(main, workers=workers, timeout=tags - 1)
    elapsed = time.perf_counter() - t0
    assert result.stats.tags == tags
    return elapsed


def step(x: int) -> int:
    return x + 1


def time_plain_chain(tags: int, depth: int) -> float:
    t0 = time.perf_counter()
    for n in range(tags):
        x = n
        for _ in range(depth):
            x = step(x)
    return time.perf_counter() - t0


def make_ray_actor_cls() -> Any:
    import ray

    @ray.remote
    class Adder:
        def step(self, x: int) -> int:
            return x + 1

    return Adder


def time_ray_chain(actors: list[Any], calls: int) -> float:
    import ray

    t0 = time.perf_counter()
    for n in range(calls // len(actors)):
        x = n
        for a in actors:
            x = ray.get(a.step.remote(x))
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="short run (fewer tags and repeats)")
    ap.add_argument("--no-ray", action="store_true", help="skip the Ray actor peer")
    ap.add_argument("--out", default="results", help="output folder (default results/)")
    args = ap.parse_args()
    tags = 300 if args.quick else 2000
    repeats = 3 if args.quick else 7
    ray_calls = 100 if args.quick else 500

    actors: list[Any] = []
    if not args.no_ray:
        import ray

        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
        cls = make_ray_actor_cls()
        actors = [cls.remote() for _ in range(DEPTH)]
        time_ray_chain(actors, DEPTH * 5)  # warm up

    # name -> (reactions per run, tags per run, timing function)
    variants: dict[str, tuple[int, int, Callable[[], float]]] = {
        "plain function call": (tags * DEPTH, tags, lambda: time_plain_chain(tags, DEPTH)),
        f"reflow chain ({DEPTH} deep), 1 worker": (
            tags * (DEPTH + 1), tags, lambda: time_reactor(lambda: Chain(DEPTH), tags, 1)),
        f"reflow fan-out ({WIDTH} wide), 1 worker": (
            tags * (WIDTH + 1), tags, lambda: time_reactor(lambda: Fan(WIDTH), tags, 1)),
        f"reflow fan-out ({WIDTH} wide), 2 workers": (
            tags * (WIDTH + 1), tags, lambda: time_reactor(lambda: Fan(WIDTH), tags, 2)),
    }
    if actors:
        variants["ray actor call"] = (ray_calls, ray_calls // DEPTH,
                                      lambda: time_ray_chain(actors, ray_calls))

    samples: dict[str, list[float]] = {name: [] for name in variants}
    for _ in tqdm(range(repeats), desc="repeats"):
        for name, (n_reactions, _, fn) in variants.items():
            samples[name].append(fn() / n_reactions)
    if actors:
        import ray

        ray.shutdown()

    base = statistics.median(samples["plain function call"])
    ray_call = statistics.median(samples["ray actor call"]) if actors else float("nan")
    rows = []
    for name, (n_reactions, n_tags, _) in variants.items():
        per_call = statistics.median(samples[name])
        rows.append({"variant": name, "per_reaction_us": per_call * 1e6,
                     "per_tag_us": per_call * n_reactions / n_tags * 1e6,
                     "ratio_to_plain_call": per_call / base, "ray_call_over_this": ray_call / per_call,
                     "samples_us": [s * 1e6 for s in samples[name]]})
    print(f"\n{'variant':44} {'per reaction':>14} {'per tag':>12} {'x plain call':>13} "
          f"{'Ray call / this':>16}")
    for r in rows:
        print(f"{r['variant']:44} {r['per_reaction_us']:11.2f} us {r['per_tag_us']:9.1f} us "
              f"{r['ratio_to_plain_call']:12.0f}x {r['ray_call_over_this']:15.1f}x")
    out = Path(args.out)
    out.mkdir(exist_ok=True)
    meta = {"machine": platform.platform(), "python": platform.python_version(), "quick": args.quick,
            "tags": tags, "repeats": repeats, "depth": DEPTH, "width": WIDTH}
    (out / "reaction_overhead.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    plot(rows, out / "reaction_overhead.png")
    print(f"wrote {out / 'reaction_overhead.json'} and {out / 'reaction_overhead.png'}")


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 3.5))
    names = [r["variant"] for r in rows]
    ax.barh(names, [r["per_reaction_us"] for r in rows], color="#4c72b0")
    ax.set_xscale("log")
    ax.set_xlabel("microseconds per reaction / call (log scale, median)")
    ax.invert_yaxis()
    ax.set_title("reaction overhead vs plain call and Ray actor call")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
