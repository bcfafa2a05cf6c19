"""``reflow envs``: step a gymnasium env bank with random actions and report throughput and episodes.

A quick way to check that an env id works in the bank (MuJoCo and Atari ids included), how many steps per
second a machine gets for a given number of envs and workers, and that two runs with one seed agree.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from reflow.rl.envs.bank import BankStats


def register(subparsers: Any) -> None:
    """Add ``envs`` to the ``reflow`` command."""
    p = subparsers.add_parser(
        "envs", help="step an env bank with random actions; report env steps/s and episode returns",
        description="Replicate a gymnasium env NUM_ENVS times over --workers processes (the calling one "
        "included), step it with seeded random actions and print env steps per second and episode "
        "statistics. Results are identical for any --workers.",
        epilog="examples:\n  reflow envs CartPole-v1 --num-envs 64 --workers 2\n"
        "  reflow envs ALE/Pong-v5 --num-envs 8 --workers 2 --steps 200\n"
        "  reflow envs ALE/Pong-v5 --num-envs 64 --workers 16 --async   # EnvPool-style send/recv\n"
        "  reflow envs Hopper-v5 -n 64 -w 16 --async --slices-per-worker 2",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("env_id", help="gymnasium env id, e.g. CartPole-v1, Hopper-v5, ALE/Pong-v5")
    p.add_argument("--num-envs", "-n", type=int, default=8, help="number of envs (default 8)")
    p.add_argument("--workers", "-w", type=int, default=1,
                   help="processes stepping envs, the calling one included (default 1)")
    p.add_argument("--keep-workers", action="store_true",
                   help="use all --workers even when fewer cores are free (by default the bank then steps in "
                   "fewer processes, which is faster; results are the same)")
    p.add_argument("--steps", type=int, default=1000, help="vector steps to run (default 1000)")
    p.add_argument("--seed", type=int, default=0, help="env i is seeded with seed + i (default 0)")
    p.add_argument("--async", dest="asynchronous", action="store_true",
                   help="step with make_async: --workers worker processes, each slice stepped as soon as "
                   "its actions are there (each env gets the same actions, so the checksum is the same)")
    p.add_argument("--slices-per-worker", type=int, default=1,
                   help="with --async: slices each worker steps in turn, so it steps one while the caller "
                   "turns another around (default 1; 2 pays for heavy envs)")
    p.set_defaults(func=_envs_cmd)


def _envs_cmd(args: argparse.Namespace) -> int:
    import numpy as np

    from reflow.errors import ReflowError

    try:
        run = _run_async if args.asynchronous else _run_lockstep
        checksum, seconds, returns, episodes, stats = run(args)
    except ReflowError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    total = args.steps * args.num_envs
    mode = ", asynchronous" if args.asynchronous else ""
    print(f"{args.env_id}: {total} env steps in {seconds:.2f} s = {total / seconds:,.0f} steps/s "
          f"({args.num_envs} envs, {args.workers} workers{mode})")
    if returns:
        print(f"episodes: {episodes}, mean return of the last {len(returns)}: {np.mean(returns):.2f}")
    print(f"reward checksum: {checksum:.6f} (equal for any --workers, with or without --async, "
          "for one --seed)")
    print(f"processes: {stats.describe()}")
    return 0


Run = tuple[float, float, list[float], int, "BankStats"]  # reward checksum, seconds, returns, episodes, bank


def _run_lockstep(args: argparse.Namespace) -> Run:
    import numpy as np
    from tqdm import tqdm

    from reflow.rl.envs.vector import make_vec

    with make_vec(args.env_id, args.num_envs, num_workers=args.workers, seed=args.seed,
                  fit_workers=not args.keep_workers) as env:
        env.reset()
        env.action_space.seed(args.seed)
        checksum = 0.0
        t0 = time.perf_counter()
        for _ in tqdm(range(args.steps), desc=args.env_id, unit="step", file=sys.stderr):
            _, rewards, *_ = env.step(env.action_space.sample())
            checksum += float(np.sum(rewards))
        return checksum, time.perf_counter() - t0, list(env.return_queue), env.episode_count, env.bank.stats


def _run_async(args: argparse.Namespace) -> Run:
    """Every env makes ``--steps`` steps on the actions the lock-step run would give it."""
    import numpy as np
    from gymnasium.vector.utils import batch_space
    from tqdm import tqdm

    from reflow.rl.envs.async_env import collect, make_async, step_each

    with make_async(args.env_id, args.num_envs, num_workers=args.workers, seed=args.seed,
                    slices_per_worker=args.slices_per_worker) as env:
        space = batch_space(env.single_action_space, args.num_envs)
        space.seed(args.seed)
        actions = np.stack([space.sample() for _ in range(args.steps)])  # step t of env i: actions[t, i]
        rewards = np.zeros((args.steps, args.num_envs))
        env.async_reset()
        collect(env)
        t0 = time.perf_counter()
        total = args.steps * args.num_envs
        with tqdm(total=total, desc=args.env_id, unit="env step", file=sys.stderr) as bar:
            step_each(env, actions, rewards, progress=bar.update)
        seconds = time.perf_counter() - t0
        checksum = 0.0
        for row in rewards:  # summed step by step, as the lock-step run sums them
            checksum += float(np.sum(row))
        return checksum, seconds, list(env.return_queue), env.episode_count, env.bank.stats
