"""``reflow train`` and ``reflow eval``: train PPO, DQN or SAC on a gymnasium env, evaluate a checkpoint.

``reflow train CartPole-v1`` is the project's demo: with default settings PPO reaches the return threshold
(475) and stops, then writes ``model.pt``, ``log.json`` and ``curve.png`` under ``--out``.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

INTERRUPTED = 130  # the shell's status for a program ended by SIGINT


def _target(text: str) -> float | str:
    """``--target-return``: a number (negative ones too), or none/off."""
    if text.lower() in ("none", "off"):
        return "none"
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number or 'none': {text!r}") from None


def register(subparsers: Any) -> None:
    """Add ``train`` and ``eval`` to the ``reflow`` command."""
    p = subparsers.add_parser(
        "train", help="train PPO, DQN or SAC on a gymnasium env; write checkpoint, log and learning curve",
        description="Train an agent (a component graph: see docs/components.md) on NUM_ENVS copies of "
        "ENV_ID stepped by --workers processes. Runs until --steps env steps or until the mean return of the "
        "last 20 episodes reaches --target-return. Hyper-parameters: the RL Zoo's tuned ones for the env "
        "where reflow has them, then --config FILE, then the options given. The run is bit-identical for a "
        "given --seed, whatever --workers is.",
        epilog="examples:\n  reflow train CartPole-v1\n"
        "  reflow train CartPole-v1 --algo ppo --envs 16 --workers 2 --seed 0\n"
        "  reflow train Acrobot-v1 --algo dqn --steps 100000\n"
        "  reflow train Pendulum-v1 --algo sac --steps 20000 --target-return -200\n"
        "  reflow train Hopper-v5 --algo ppo --steps 200000 --config my_ppo.toml\n"
        "  reflow train ALE/Pong-v5 --algo dqn --steps 2000000 --workers 2\n\n"
        "Ctrl-C stops at the next step and saves the checkpoint and log so far (exit status 130).",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("env_id", help="gymnasium env id, e.g. CartPole-v1, Acrobot-v1, Pendulum-v1, Hopper-v5, "
                   "ALE/Pong-v5 (Atari gets the standard preprocessing and a 4-frame stack)")
    p.add_argument("--algo", default=None, help="ppo (default), dqn (discrete actions) or sac (continuous)")
    p.add_argument("--config", type=Path, default=None,
                   help="TOML or YAML file of settings and hyper-parameters (see docs/components.md)")
    p.add_argument("--envs", type=int, default=None, help="number of envs (default: the preset's, else 8)")
    p.add_argument("--workers", "-w", type=int, default=None,
                   help="processes stepping envs, the calling one included (default 1)")
    p.add_argument("--keep-workers", action="store_true",
                   help="use all --workers even when fewer cores are free (by default the env bank steps in "
                   "fewer processes then; the run is the same either way)")
    p.add_argument("--seed", type=int, default=None, help="seed for envs, weights and sampling (default 0)")
    p.add_argument("--steps", type=int, default=None, help="env-step budget (default 500000)")
    p.add_argument("--target-return", type=_target, default=None,
                   help="stop when the mean return of the last 20 episodes reaches this (default: the env's "
                   "reward threshold, e.g. 475 for CartPole-v1, -100 for Acrobot-v1; 'none' trains for "
                   "--steps)")
    p.add_argument("--eval-every", type=int, default=None,
                   help="every this many env steps, play --eval-episodes greedy episodes; the target is then "
                   "judged on them and the best evaluated policy is saved (DQN presets: on)")
    p.add_argument("--eval-episodes", type=int, default=None, help="episodes per greedy evaluation (10)")
    p.add_argument("--compile", action="store_true",
                   help="build the agents with torch.compile instead of eager PyTorch")
    p.add_argument("--out", type=Path, default=None,
                   help="output directory (default runs/<env>-<algo>-<seed>/)")
    p.add_argument("--ray", nargs="?", const="", default=None, metavar="ADDRESS",
                   help="step the envs on the nodes of a Ray cluster (the one at ADDRESS, else RAY_ADDRESS, "
                   "else a local Ray), --workers slices spread over them; the learner stays here and the "
                   "results are the same as without --ray")
    p.set_defaults(func=_train_cmd)

    e = subparsers.add_parser(
        "eval", help="evaluate a checkpoint written by `reflow train`: mean/std return over N episodes",
        description="Load CHECKPOINT, play --episodes episodes with its greedy policy (argmax, or the "
        "Gaussian's mean) on its env and print the mean and standard deviation of the return.",
        epilog="example:\n  reflow eval runs/CartPole-v1-ppo-0/model.pt --episodes 20",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    e.add_argument("checkpoint", type=Path, help="model.pt written by `reflow train`")
    e.add_argument("--episodes", "-n", type=int, default=10, help="episodes to play (default 10)")
    e.add_argument("--env", default=None, help="env id (default: the one the checkpoint was trained on)")
    e.add_argument("--seed", type=int, default=1000, help="seed of the evaluation envs (default 1000)")
    e.set_defaults(func=_eval_cmd)


def _train_cmd(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from reflow.errors import ReflowError
    from reflow.rl.checkpoint import save_checkpoint
    from reflow.rl.config import resolve
    from reflow.rl.interrupt import interrupts_deferred
    from reflow.rl.plot import plot_curve
    from reflow.rl.train import train

    try:
        overrides = {"num_envs": args.envs, "num_workers": args.workers, "seed": args.seed,
                     "total_steps": args.steps, "eval_every": args.eval_every,
                     "eval_episodes": args.eval_episodes,
                     "build_backend": "compile" if args.compile else None,
                     "fit_workers": False if args.keep_workers else None,
                     "backend": None if args.ray is None else "ray", "ray_address": args.ray or None,
                     "target_return": None if args.target_return == "none" else args.target_return}
        cfg = resolve(args.env_id, args.algo, args.config, overrides)
        if args.target_return == "none":
            cfg = replace(cfg, target_return=None)
    except ReflowError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    out: Path = args.out or Path("runs") / f"{cfg.env_id.replace('/', '_')}-{cfg.algo}-{cfg.seed}"
    bar = tqdm(total=cfg.total_steps, desc=f"{cfg.algo} {cfg.env_id}", unit="step", file=sys.stderr)

    def progress(steps: int, recent: float | None) -> None:
        bar.update(steps - bar.n)
        if recent is not None:
            bar.set_postfix(ret=f"{recent:.1f}", refresh=False)

    try:
        result = train(cfg, progress)
    except ReflowError as e:
        bar.close()
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # before the first step, or a second Ctrl-C: no consistent state to save
        bar.close()
        print("interrupted: stopped before a step ended; nothing saved", file=sys.stderr)
        return INTERRUPTED
    bar.close()
    with interrupts_deferred():  # a Ctrl-C now waits until the files are whole
        save_checkpoint(out / "model.pt", cfg.env_id, result.agent, result.policy_state())
        log = {"env_id": cfg.env_id, "algo": cfg.algo, "num_envs": cfg.num_envs,
               "num_workers": cfg.num_workers, "seed": cfg.seed, "backend": cfg.backend,
               "hparams": asdict(cfg.hparams), "steps": result.steps, "seconds": round(result.seconds, 3),
               "target_return": cfg.target_return, "reached_target": result.reached_target,
               "interrupted": result.interrupted, "curve": [[s, r] for s, r in result.curve],
               "greedy_evals": [[s, r] for s, r in result.evals], "episode_returns": result.episode_returns}
        (out / "log.json").write_text(json.dumps(log, indent=1))
        plot_curve(result.curve, out / "curve.png", f"{cfg.algo} on {cfg.env_id} (seed {cfg.seed})",
                   cfg.target_return)
    if result.interrupted:
        print(f"interrupted after {result.steps} env steps ({result.seconds:.1f} s); saved the run so far",
              file=sys.stderr)
    else:
        status = "reached" if result.reached_target else "did not reach"
        judged = " (greedy evaluation)" if result.evals else ""
        print(f"{cfg.algo} {status} target {cfg.target_return}{judged} after {result.steps} env steps in "
              f"{result.seconds:.1f} s")
    if result.evals:
        best = max(r for _, r in result.evals)
        print(f"greedy evaluations: last {result.evals[-1][1]:.1f}, best {best:.1f} (the checkpoint's)")
    print(f"checkpoint: {out / 'model.pt'}\nlog:        {out / 'log.json'}\nplot:       {out / 'curve.png'}")
    return INTERRUPTED if result.interrupted else 0


def _eval_cmd(args: argparse.Namespace) -> int:
    from reflow.errors import ReflowError
    from reflow.rl.evaluate import evaluate

    try:
        returns = evaluate(args.checkpoint, args.episodes, env_id=args.env, seed=args.seed)
    except ReflowError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return INTERRUPTED
    import numpy as np

    print(f"{len(returns)} episodes: mean return {np.mean(returns):.2f} +- {np.std(returns):.2f}")
    return 0
