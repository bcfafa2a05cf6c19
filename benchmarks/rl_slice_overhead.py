"""Claim: a slice of reflow's env bank costs about what a bare Python loop over the same envs costs, even with
a second process stepping beside it in lock-step.

With 2 workers, the bank's speed is bounded by what each process does per step. This times, in this process,
one step of half the envs while a second process steps the other half in lock-step (woken every step by a
semaphore, with the bank's own spin-then-block wait), the same pre-drawn random actions for all:

* ``loop``           the plain loop over the envs (numpy-scalar actions, reset on done), as in
                     ``rl_sim_throughput.py``;
* ``slice``          reflow's ``SliceRunner`` over the same envs, writing every result into a bank layout in
                     shared memory (what a bank process does per step);
* ``slice <file>``   (``--also FILE``) another version of ``slice.py``, for an A/B, e.g.
                     ``git show 1e3ac0b:src/reflow/rl/envs/slice.py > /tmp/old_slice.py``;
* ``pair``           one whole lock-step step of the two processes running the plain loop, against
                     ``all``, one plain loop over every env in this process: what lock-step costs by itself.

Median per-step times over interleaved repeats (one timed run of every system per round).

    flock /tmp/reflow-bench.lock .venv/bin/python benchmarks/rl_slice_overhead.py [--quick] \
        [--also /tmp/old_slice.py]

Writes results/rl_slice_overhead.json.
"""

from __future__ import annotations

import argparse
import importlib.util
import inspect
import json
import multiprocessing as mp
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from rl_sim_throughput import Loop, draw_actions, make_env

from reflow.rl.envs.slice import SliceRunner
from reflow.rl.envs.space_tree import SpaceTree
from reflow.rl.envs.spec import action_code, bank_layout
from reflow.rl.envs.worker import POLL_S, spin_acquire
from reflow.transport.shm import SharedSegment

SPIN_S = 0.002  # the bank's default spin before blocking


def wait(sem: Any) -> None:
    if not spin_acquire(sem, SPIN_S):
        while not sem.acquire(timeout=POLL_S):
            pass


def partner(env_id: str, lo: int, hi: int, actions: np.ndarray[Any, Any], cmd: Any, done: Any,
            stop: Any) -> None:
    """The second process: one plain-loop step of envs lo..hi-1 per command, until ``stop``."""
    loop = Loop(env_id, hi - lo, first_seed=lo)
    done.release()
    t = 0
    while True:
        wait(cmd)
        if stop.is_set():
            break
        loop.run(actions[t % len(actions), None, lo:hi])
        t += 1
        done.release()
    loop.close()


def slice_module(path: str) -> Any:
    spec = importlib.util.spec_from_file_location(f"slice_{abs(hash(path))}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--env", default="CartPole-v1")
    ap.add_argument("--envs", type=int, default=64, help="all envs; this process times half of them")
    ap.add_argument("--steps", type=int, default=400, help="vector steps per timed run")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--also", action="append", default=[], help="another slice.py to time (repeatable)")
    ap.add_argument("--quick", action="store_true", help="100 steps, 3 repeats")
    ap.add_argument("--out", type=Path, default=Path("results/rl_slice_overhead.json"))
    args = ap.parse_args()
    if args.quick:
        args.steps, args.repeats = 100, 3
    n, half = args.envs, args.envs // 2
    actions = draw_actions(args.env, n, args.steps)
    probe = make_env(args.env)
    obs, act = SpaceTree(probe.observation_space), SpaceTree(probe.action_space, "action")
    discrete = isinstance(probe.action_space, gym.spaces.Discrete)
    probe.close()
    layout = bank_layout(n, 2, obs, act, 3)
    segment = SharedSegment.create(layout.size)
    ctx = mp.get_context("spawn")
    cmd, done, stop = ctx.Semaphore(0), ctx.Semaphore(0), ctx.Event()
    proc = ctx.Process(target=partner, args=(args.env, half, n, actions, cmd, done, stop), daemon=True)
    proc.start()
    try:
        wait(done)  # the partner made its envs
        arrays = layout.views(segment.buf)
        arrays["action_dtype"][:] = action_code(arrays["actions"].dtype, arrays["actions"].dtype)  # as a bank

        def runner(cls: Any) -> Any:
            envs = [make_env(args.env) for _ in range(half)]
            for i, env in enumerate(envs):
                env.reset(seed=i)
            if "discrete" in inspect.signature(cls).parameters:  # slice.py before space trees
                return cls(envs, 0, arrays, 0, discrete)
            return cls(envs, 0, arrays, 0)

        runners = {"slice": runner(SliceRunner)}
        runners.update({f"slice {path}": runner(slice_module(path).SliceRunner) for path in args.also})
        loop, whole = Loop(args.env, half), Loop(args.env, n)

        def timed_half(step: Callable[[np.ndarray[Any, Any]], None]) -> Callable[[], tuple[float, float]]:
            def run() -> tuple[float, float]:
                inner = []
                t0 = time.perf_counter()
                for row in actions:
                    cmd.release()
                    s0 = time.perf_counter()
                    step(row)
                    inner.append(time.perf_counter() - s0)
                    wait(done)
                return statistics.median(inner), (time.perf_counter() - t0) / len(actions)
            return run

        def slice_step(r: Any) -> Callable[[np.ndarray[Any, Any]], None]:
            def step(row: np.ndarray[Any, Any]) -> None:
                arrays["actions"][:half] = row[:half]
                r.step()
            return step

        systems = {"loop": timed_half(lambda row: loop.run(row[None, :half]))}
        systems.update({name: timed_half(slice_step(r)) for name, r in runners.items()})

        def all_envs() -> tuple[float, float]:
            t0 = time.perf_counter()
            whole.run(actions)
            per_step = (time.perf_counter() - t0) / len(actions)
            return per_step, per_step

        systems["all"] = all_envs
        times: dict[str, list[tuple[float, float]]] = {name: [] for name in systems}
        for _ in range(args.repeats):
            for name, run in systems.items():
                times[name].append(run())
    finally:
        stop.set()
        cmd.release()
        proc.join(10)
        if proc.is_alive():
            proc.kill()
        segment.close()
    half_step = {name: statistics.median(t[0] for t in ts) for name, ts in times.items()}
    pair_step = statistics.median(t[1] for t in times["loop"])
    result = {"env": args.env, "envs": n, "timed_envs": half, "steps": args.steps, "repeats": args.repeats,
              "us_per_step": {k: v * 1e6 for k, v in half_step.items() if k != "all"},
              "vs_loop": {k: v / half_step["loop"] for k, v in half_step.items() if k not in ("loop", "all")},
              "all_us_per_step": half_step["all"] * 1e6, "pair_us_per_step": pair_step * 1e6,
              "pair_speedup": half_step["all"] / pair_step}
    print(f"{args.env}: {half} of {n} envs per process, a second process stepping the rest in lock-step")
    print(f"{'system':<40}{'us/step':>10}{'vs loop':>10}")
    for name, us in result["us_per_step"].items():
        print(f"{name:<40}{us:>10.1f}{result['vs_loop'].get(name, 1.0):>9.3f}x")
    print(f"pair of plain loops in lock-step: {pair_step * 1e6:.1f} us per step, "
          f"{result['pair_speedup']:.2f}x one loop over all {n} envs ({half_step['all'] * 1e6:.1f} us)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
