"""Claim: an env bank on Ray (``make_vec(..., backend="ray")``) costs one actor call per node and step over
the local bank, and keeps up with the same envs written as plain Ray actors, one per slice.

Side by side, in one process run, the same envs, the same pre-drawn random actions (Pong and Hopper, as in
``rl_sim_throughput.py``), interleaved repeats (one run of every system per round):

* ``local``          ``make_vec(env, n, num_workers=W)``: this machine's shared-memory bank, W processes;
* ``ray``            ``make_vec(env, n, num_workers=W, backend="ray")`` on a two-node ``LocalCluster``:
                     one unit per node (a Ray actor owning a local bank of its slices), one actor call per
                     node and step, observations copied back into this process's arrays;
* ``ray async``      ``make_async(..., backend="ray")``: one actor per slice, whichever slice is back first
                     gets its next actions (every env makes the same number of steps);
* ``actors/slice``   plain Ray actors, one per slice, spread over the two nodes, each stepping its envs in a
                     loop (reset on done), ``ray.get`` of every slice's ``step.remote`` per step.

On one machine the two "nodes" share its cores, so no scaling can show: this measures what crossing nodes
costs per step. Throughput is env steps per second, the median over interleaved repeats; ratios are of
those medians.

    flock -x /tmp/reflow-cpu.lock .venv/bin/python benchmarks/ray_envs.py [--quick]

Writes results/ray_envs.json.
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
from rl_sim_throughput import STEPS, Vector, draw_actions, make_ray_actor_class, register_ale

from reflow.rl import make_async, make_vec
from reflow.rl.envs.async_env import collect, step_each
from reflow.rl.envs.bank import slice_bounds
from reflow.runtime.ray_cluster import LocalCluster, affinity, connect, nodes

ENVS = {"ALE/Pong-v5": 8, "Hopper-v5": 8}


class RayAsync:
    """``make_async(..., backend="ray")``, driven as ``rl_sim_throughput.AsyncBank`` drives the local one:
    each env takes its next action whenever its slice is back."""

    def __init__(self, env_id: str, n: int, workers: int) -> None:
        self.env = make_async(env_id, n, num_workers=workers, seed=0, batch_size=max(1, n // 4),
                              backend="ray")
        self.env.async_reset()
        collect(self.env)  # the resets, outside the timed runs

    def run(self, actions: np.ndarray[Any, Any]) -> None:
        step_each(self.env, actions)

    def close(self) -> None:
        self.env.close()


class SpreadActors:
    """Plain Ray actors, one per slice of ``slice_bounds(n, workers)``, dealt over the cluster's nodes."""

    def __init__(self, actor_cls: Any, env_id: str, n: int, workers: int) -> None:
        import ray

        self.ray = ray
        self.bounds = slice_bounds(n, workers)
        alive = nodes()
        self.actors = [actor_cls.options(scheduling_strategy=affinity(alive[i % len(alive)].node_id))
                       .remote(env_id, list(range(lo, hi)))
                       for i, (lo, hi) in enumerate(zip(self.bounds[:-1], self.bounds[1:], strict=True))]
        ray.get([a.ready.remote() for a in self.actors])

    def run(self, actions: np.ndarray[Any, Any]) -> None:
        for row in actions:
            self.ray.get([a.step.remote(row[lo:hi]) for a, lo, hi in
                          zip(self.actors, self.bounds[:-1], self.bounds[1:], strict=True)])

    def close(self) -> None:
        for a in self.actors:
            self.ray.kill(a)


def bench(env_id: str, n: int, workers: int, repeats: int, actor_cls: Any) -> dict[str, list[float]]:
    steps = STEPS[env_id]
    actions = draw_actions(env_id, n, steps)
    systems: dict[str, Callable[[], Any]] = {
        "local": lambda: Vector(make_vec(env_id, n, num_workers=workers, fit_workers=False)),
        "ray": lambda: Vector(make_vec(env_id, n, num_workers=workers, fit_workers=False, backend="ray")),
        "ray async": lambda: RayAsync(env_id, n, workers),
        "actors/slice": lambda: SpreadActors(actor_cls, env_id, n, workers),
    }
    made: dict[str, Any] = {}
    try:
        for name, make in systems.items():
            made[name] = make()
            made[name].run(actions[:3])  # warm up
        rates: dict[str, list[float]] = {name: [] for name in made}
        for _ in range(repeats):
            for name, system in made.items():
                t0 = time.perf_counter()
                system.run(actions)
                rates[name].append(n * steps / (time.perf_counter() - t0))
        return rates
    finally:
        for system in made.values():
            system.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="2 repeats")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--workers", type=int, default=2, help="slices (processes) over the whole bank")
    parser.add_argument("--out", type=Path, default=Path("results"))
    args = parser.parse_args()
    repeats = 2 if args.quick else args.repeats
    register_ale()  # draw_actions makes a Pong here
    rows = []
    with LocalCluster(nodes=2, cpus_per_node=1, object_store_mb=256) as cluster, \
            connect(cluster.address, log_to_driver=False):
        actor_cls = make_ray_actor_class()
        for env_id, n in ENVS.items():
            rates = bench(env_id, n, args.workers, repeats, actor_cls)
            med = {k: statistics.median(v) for k, v in rates.items()}
            ratios = {"ray / local": med["ray"] / med["local"],
                      "ray / actors per slice": med["ray"] / med["actors/slice"],
                      "ray async / actors per slice": med["ray async"] / med["actors/slice"]}
            rows.append({"env": env_id, "n": n, "workers": args.workers, "steps": STEPS[env_id],
                         "steps_per_s": med, "all": rates, "ratios": ratios})
            print(f"{env_id} n={n}: " + ", ".join(f"{k} {v:.0f}/s" for k, v in med.items()), flush=True)
    names = list(rows[0]["steps_per_s"])
    print(f"\nenv steps/s, median of {repeats}, {args.workers} slices on a 2-node local cluster")
    print(f"{'env':<13}{'n':>3}" + "".join(f"{k:>14}" for k in names))
    for r in rows:
        print(f"{r['env']:<13}{r['n']:>3}" + "".join(f"{r['steps_per_s'][k]:>14.0f}" for k in names))
    for r in rows:
        print(f"{r['env']}: " + ", ".join(f"{k} {v:.2f}x" for k, v in r["ratios"].items()))
    args.out.mkdir(parents=True, exist_ok=True)
    out = args.out / "ray_envs.json"
    out.write_text(json.dumps({"machine": platform.platform(), "cpus": os.cpu_count(), "repeats": repeats,
                               "rows": rows}, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
