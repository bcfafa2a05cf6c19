"""Claim: reflow's env bank steps gymnasium envs faster than a plain loop, gymnasium's vector envs and Ray.

Side by side, in one process run, the same envs, the same pre-drawn random actions, for 8..64 envs:

* ``loop``          a plain Python loop over the envs in this process (reset on done), handing each env its
                    action as a numpy scalar: gymnasium checks those faster than Python ints (6-8% on
                    CartPole), so this is the faster plain loop;
* ``sync``          ``gymnasium.vector.SyncVectorEnv``;
* ``async``         ``gymnasium.vector.AsyncVectorEnv`` (one process per env, shared memory);
* ``ray/env``       Ray actors, one env per actor (``ray.get`` of one ``step.remote`` per env);
* ``ray/slice``     Ray actors, one actor per slice of envs (as many actors as reflow has workers);
* ``reflow wN``     ``reflow.rl.make_vec(..., num_workers=N)`` (N processes, the caller's included);
* ``reflow async wN`` ``reflow.rl.make_async(..., num_workers=N)``: EnvPool's send / recv; every env makes
                    the same number of steps on the same actions, but the caller takes whichever slices are
                    ready (at least a quarter of the envs per ``recv``) and sends their next actions, so no
                    slice waits for one that is not among them. ``reflow async wN xK`` (``--slices-per-worker
                    K``): the same with K slices per worker process, so a worker steps one of its slices
                    while the caller turns another around.
* ``ceiling wN``    not a vector env but the machine's bound for N processes: N processes each run the plain
                    loop over their slice for the whole run, with no exchange between steps (one message to
                    start, one to finish). No system that hands every step's results to one caller can beat
                    it; ``reflow wN / ceiling wN`` is the share of the machine's parallel speed reflow keeps.

Throughput is env steps per second over a fixed number of vector steps, the median over interleaved repeats
(one run of every system per round). Ratios are against the plain loop and against the better Ray setting.
Writes results/rl_sim_throughput.json and results/rl_sim_throughput.png.

    flock /tmp/reflow-bench.lock .venv/bin/python benchmarks/rl_sim_throughput.py            # full run
    flock /tmp/reflow-bench.lock .venv/bin/python benchmarks/rl_sim_throughput.py --quick    # a short run
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import re
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from tqdm import tqdm

from reflow.rl import make_async, make_vec
from reflow.rl.envs.async_env import collect, step_each
from reflow.rl.envs.bank import slice_bounds

STEPS = {"CartPole-v1": 400, "Hopper-v5": 100, "ALE/Pong-v5": 40}  # vector steps per timed run


def register_ale() -> None:
    import ale_py

    gym.register_envs(ale_py)


def make_env(env_id: str) -> gym.Env[Any, Any]:
    """Picklable env factory for AsyncVectorEnv's spawned workers (registers ALE ids there too)."""
    if env_id.startswith("ALE/"):
        register_ale()
    return gym.make(env_id)


def draw_actions(env_id: str, n: int, steps: int) -> np.ndarray[Any, Any]:
    space = gym.make(env_id).action_space
    space.seed(0)
    return np.stack([np.stack([space.sample() for _ in range(n)]) for _ in range(steps)])


class Loop:
    def __init__(self, env_id: str, n: int, first_seed: int = 0) -> None:
        self.envs = [make_env(env_id) for _ in range(n)]
        for i, e in enumerate(self.envs):
            e.reset(seed=first_seed + i)

    def run(self, actions: np.ndarray[Any, Any]) -> None:
        for row in actions:  # numpy scalars (or rows): gymnasium checks them faster than Python ints
            for env, a in zip(self.envs, row, strict=True):
                _, _, te, tr, _ = env.step(a)
                if te or tr:
                    env.reset()

    def close(self) -> None:
        for e in self.envs:
            e.close()


def loop_process(conn: Any, env_id: str, lo: int, hi: int) -> None:
    """A ``Ceiling`` process: the plain loop over envs lo..hi-1, one whole run per message."""
    loop = Loop(env_id, hi - lo, first_seed=lo)
    conn.send(True)
    while (actions := conn.recv()) is not None:
        loop.run(actions)
        conn.send(True)
    loop.close()


class Ceiling:
    """N processes, each stepping its slice in a plain loop with no exchange between steps."""

    def __init__(self, env_id: str, n: int, workers: int) -> None:
        import multiprocessing as mp

        ctx = mp.get_context("spawn")
        self.bounds = slice_bounds(n, workers)  # the same slices as reflow's bank
        self.conns, self.procs = [], []
        for lo, hi in zip(self.bounds[:-1], self.bounds[1:], strict=True):
            mine, theirs = ctx.Pipe()
            self.procs.append(ctx.Process(target=loop_process, args=(theirs, env_id, lo, hi), daemon=True))
            self.procs[-1].start()
            self.conns.append(mine)
        for c in self.conns:
            c.recv()  # every process has made and reset its envs

    def run(self, actions: np.ndarray[Any, Any]) -> None:
        for c, lo, hi in zip(self.conns, self.bounds[:-1], self.bounds[1:], strict=True):
            c.send(actions[:, lo:hi])
        for c in self.conns:
            c.recv()

    def close(self) -> None:
        for c in self.conns:
            c.send(None)
        for p in self.procs:
            p.join(10)


class Vector:
    def __init__(self, env: gym.vector.VectorEnv) -> None:
        self.env = env
        env.reset(seed=0)

    def run(self, actions: np.ndarray[Any, Any]) -> None:
        for row in actions:
            self.env.step(row)

    def close(self) -> None:
        self.env.close()


class AsyncBank:
    """reflow's asynchronous bank: each env takes its own next action from ``actions`` (step t of env i
    is ``actions[t, i]``) whenever its slice comes back; a run ends when every env made ``len(actions)``
    steps."""

    def __init__(self, env_id: str, n: int, workers: int, per_worker: int = 1) -> None:
        # a quarter of the envs per recv (whole slices): with many small slices the caller's bookkeeping
        # per recv would otherwise add up
        self.env = make_async(env_id, n, num_workers=workers, seed=0, batch_size=max(1, n // 4),
                              slices_per_worker=per_worker)
        self.env.async_reset()
        collect(self.env)  # the resets, outside the timed runs

    def run(self, actions: np.ndarray[Any, Any]) -> None:
        step_each(self.env, actions)

    def close(self) -> None:
        self.env.close()


def make_ray_actor_class() -> Any:
    import ray

    @ray.remote(num_cpus=0)
    class EnvSlice:
        def __init__(self, env_id: str, seeds: list[int]) -> None:
            if env_id.startswith("ALE/"):
                register_ale()
            self.envs = [gym.make(env_id) for _ in seeds]
            for env, s in zip(self.envs, seeds, strict=True):
                env.reset(seed=s)

        def ready(self) -> bool:
            return True

        def step(self, actions: Any) -> tuple[Any, Any]:
            obs, rews = [], []
            for env, a in zip(self.envs, actions, strict=True):
                o, r, te, tr, _ = env.step(a)
                if te or tr:
                    o, _ = env.reset()
                obs.append(o)
                rews.append(r)
            return np.stack(obs), np.array(rews)

    return EnvSlice


class RayActors:
    def __init__(self, actor_cls: Any, env_id: str, n: int, per_actor: int) -> None:
        import ray

        self.ray = ray
        self.bounds = [*range(0, n, per_actor), n]
        self.actors = [actor_cls.remote(env_id, list(range(lo, hi)))
                       for lo, hi in zip(self.bounds[:-1], self.bounds[1:], strict=True)]
        ray.get([a.ready.remote() for a in self.actors])  # wait until every actor is up

    def run(self, actions: np.ndarray[Any, Any]) -> None:
        for row in actions:
            self.ray.get([a.step.remote(row[lo:hi]) for a, lo, hi in
                          zip(self.actors, self.bounds[:-1], self.bounds[1:], strict=True)])

    def close(self) -> None:
        for a in self.actors:
            self.ray.kill(a)


def systems(env_id: str, n: int, workers: list[int], use_ray: bool, ray_per_env: bool,
            actor_cls: Any, per_worker: list[int]) -> dict[str, Callable[[], Any]]:
    maker = functools.partial(make_env, env_id)
    out: dict[str, Callable[[], Any]] = {
        "loop": lambda: Loop(env_id, n),
        "sync": lambda: Vector(gym.vector.SyncVectorEnv([maker] * n)),
        "async": lambda: Vector(gym.vector.AsyncVectorEnv([maker] * n, context="spawn")),
    }
    for w in workers:
        out[f"reflow w{w}"] = lambda w=w: Vector(make_vec(env_id, n, num_workers=w, fit_workers=False))
    for w in workers:
        for k in per_worker:
            if w > 1 and w * k <= n:  # with one process there is nothing to run asynchronously
                name = f"reflow async w{w}" + (f" x{k}" if k > 1 else "")
                out[name] = lambda w=w, k=k: AsyncBank(env_id, n, w, k)
    for w in workers:
        if w > 1:
            out[f"ceiling w{w}"] = lambda w=w: Ceiling(env_id, n, w)
    if use_ray:
        if ray_per_env:
            out["ray/env"] = lambda: RayActors(actor_cls, env_id, n, 1)
        slice_actors = max(workers)
        out["ray/slice"] = lambda: RayActors(actor_cls, env_id, n, -(-n // slice_actors))
    return out


def bench_config(env_id: str, n: int, repeats: int, workers: list[int], use_ray: bool, ray_per_env: bool,
                 actor_cls: Any, per_worker: list[int]) -> dict[str, float]:
    steps = STEPS[env_id]
    actions = draw_actions(env_id, n, steps)
    made: dict[str, Any] = {}
    try:
        for name, make in systems(env_id, n, workers, use_ray, ray_per_env, actor_cls, per_worker).items():
            made[name] = make()
            made[name].run(actions[:3])  # warm up
        times: dict[str, list[float]] = {name: [] for name in made}
        for _ in range(repeats):
            for name, system in made.items():
                t0 = time.perf_counter()
                system.run(actions)
                times[name].append(time.perf_counter() - t0)
        return {name: n * steps / statistics.median(ts) for name, ts in times.items()}
    finally:
        for system in made.values():
            system.close()


def plot(results: list[dict[str, Any]], path: Path) -> None:
    """One panel per env: lines over the env counts, or, for a single count, a bar per system."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullLocator

    env_ids = sorted({r["env"] for r in results}, key=list(STEPS).index)
    names = list(dict.fromkeys(name for r in results for name in r["steps_per_s"]))
    colors = {name: plt.get_cmap("tab20")(i % 20) for i, name in enumerate(names)}  # same in every panel
    fig, axes = plt.subplots(1, len(env_ids), figsize=(5.5 * len(env_ids), 4.5), squeeze=False)
    for ax, env_id in zip(axes[0], env_ids, strict=True):
        rows = [r for r in results if r["env"] == env_id]
        if len(rows) == 1:  # one env count: bars, fastest on top
            rates = sorted(rows[0]["steps_per_s"].items(), key=lambda kv: kv[1])
            ax.barh([k for k, _ in rates], [v for _, v in rates], color=[colors[k] for k, _ in rates],
                    edgecolor=["black" if k.startswith("reflow") else "none" for k, _ in rates])
            for i, (_, v) in enumerate(rates):
                ax.text(v, i, f" {v:,.0f}", va="center", fontsize=7)
            ax.set(title=f"{env_id}, {rows[0]['num_envs']} envs", xlabel="env steps / s")
            ax.margins(x=0.18)
            ax.tick_params(axis="y", labelsize=8)
            ax.grid(alpha=0.3, axis="x")
            continue
        for name in names:
            xs = [r["num_envs"] for r in rows if name in r["steps_per_s"]]
            ys = [r["steps_per_s"][name] for r in rows if name in r["steps_per_s"]]
            if xs:
                ax.plot(xs, ys, marker="o", label=name, color=colors[name],
                        linewidth=2.5 if name.startswith("reflow") else 1,
                        linestyle="--" if name.startswith("ceiling") else "-")
        ax.set(title=env_id, xlabel="envs", ylabel="env steps / s", xscale="log", yscale="log")
        ax.set_xticks([r["num_envs"] for r in rows], [str(r["num_envs"]) for r in rows])
        ax.xaxis.set_minor_locator(NullLocator())  # log-scale minor labels would overprint the env counts
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="few configs, 3 repeats")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--envs", nargs="*", default=list(STEPS))
    parser.add_argument("--sizes", nargs="*", type=int, default=[8, 16, 32, 64])
    parser.add_argument("--workers", nargs="*", type=int, default=[1, 2])
    parser.add_argument("--no-ray", action="store_true", help="leave out the Ray systems")
    parser.add_argument("--slices-per-worker", nargs="*", type=int, default=[1],
                        help="slices per worker process for the async bank (default 1; e.g. 1 2)")
    parser.add_argument("--out", type=Path, default=Path("results"))
    args = parser.parse_args()
    if args.quick:
        args.repeats, args.sizes = 3, [8, 32]
    register_ale()
    actor_cls = None
    if not args.no_ray:
        import ray

        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, logging_level="ERROR",
                 log_to_driver=False)
        actor_cls = make_ray_actor_class()
    configs = [(e, n) for e in args.envs for n in args.sizes]
    results = []
    for env_id, n in tqdm(configs, desc="configs"):
        ray_per_env = not args.quick or n <= 8
        rates = bench_config(env_id, n, args.repeats, args.workers, not args.no_ray, ray_per_env, actor_cls,
                             args.slices_per_worker)
        best_reflow = max(v for k, v in rates.items() if k.startswith("reflow"))
        ray_rates = [v for k, v in rates.items() if k.startswith("ray")]
        # per N: each of reflow's two banks with N processes, as a share of N free-running processes
        of_ceiling = {name.removeprefix("reflow "): rate / rates[f"ceiling w{m[1]}"]
                      for name, rate in rates.items()
                      if (m := re.match(r"reflow (?:async )?w(\d+)", name)) and f"ceiling w{m[1]}" in rates}
        results.append({"env": env_id, "num_envs": n, "steps_per_s": rates,
                        "reflow_vs_loop": best_reflow / rates["loop"],
                        "reflow_vs_best_ray": best_reflow / max(ray_rates) if ray_rates else None,
                        "reflow_of_ceiling": of_ceiling})
        tqdm.write(f"{env_id} {n}: " + ", ".join(f"{k} {v:.0f}" for k, v in rates.items())
                   + "; of ceiling: " + ", ".join(f"{k} {v:.0%}" for k, v in of_ceiling.items()))
    names = list(results[0]["steps_per_s"])
    print(f"\n{'env':<13}{'n':>4} " + "".join(f"{k:>16}" for k in names) + f"{'vs loop':>9}{'vs ray':>9}")
    for r in results:
        vs_ray = f"{r['reflow_vs_best_ray']:.2f}x" if r["reflow_vs_best_ray"] else "-"
        print(f"{r['env']:<13}{r['num_envs']:>4} "
              + "".join(f"{r['steps_per_s'].get(k, float('nan')):>16.0f}" for k in names)
              + f"{r['reflow_vs_loop']:>8.2f}x{vs_ray:>9}")
    args.out.mkdir(parents=True, exist_ok=True)
    meta = {"cpus": os.cpu_count(), "repeats": args.repeats, "steps": STEPS, "quick": args.quick}
    (args.out / "rl_sim_throughput.json").write_text(json.dumps({"meta": meta, "results": results}, indent=1))
    plot(results, args.out / "rl_sim_throughput.png")
    print(f"wrote {args.out / 'rl_sim_throughput.json'} and {args.out / 'rl_sim_throughput.png'}")


if __name__ == "__main__":
    main()
