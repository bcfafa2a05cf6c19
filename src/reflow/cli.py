"""The ``reflow`` command: one sub-command per front end, plus ``bench``.

Each front end owns a small module with ``register(subparsers)``; it adds its sub-command(s) and sets
``func`` on the parser to a function ``(args) -> int``. Those modules import heavy packages (torch, onnx, ray)
only inside the command functions, so ``reflow --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Any

from reflow.errors import ReflowError

# The front ends' command modules, in the order they appear in ``reflow --help``.
COMMAND_MODULES: tuple[str, ...] = (
    "reflow.reactor.commands",
    "reflow.onnx.commands",
    "reflow.rl.envs.commands",
    "reflow.rl.commands",
    "reflow.serve.commands",
    "reflow.recurrent.commands",
    "reflow.wield.commands",
)

EPILOG = """\
examples:
  reflow run examples/reactors/pipeline.py --workers 2     run a reactor program on 2 threads
  reflow graph examples/reactors/pipeline.py --out g.svg   draw its reaction graph
  reflow parallelize model.onnx -o model_par.py --workers 4   parallel PyTorch code from ONNX
  reflow envs CartPole-v1 --num-envs 64 --workers 2        env steps/s of an env bank
  reflow train CartPole-v1 --algo ppo --seed 0             train, plot the learning curve
  reflow serve examples/serve/cascade.py --port 8000       serve an inference pipeline over HTTP
  reflow recurrent explain examples/recurrent/reinforce.py  RL as recurrence equations, compiled
  reflow wield run suite.toml --workers 2                  seeds x envs, IQM with confidence intervals
  reflow <command> --help                                  options of one command
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="reflow",
        description="reflow: a deterministic dataflow system for machine learning. Every workload is a "
        "dataflow graph; reflow builds it, optimizes it, and runs it in parallel with the same results "
        "for any number of workers.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"reflow {_version()}")
    sub = parser.add_subparsers(title="commands", metavar="<command>", dest="command")
    for mod in COMMAND_MODULES:
        try:
            module = importlib.import_module(mod)
        except ImportError as e:  # a missing optional dependency disables one command, not the CLI
            _register_unavailable(sub, mod, e)
            continue
        module.register(sub)
    return parser


def _register_unavailable(sub: Any, module: str, error: ImportError) -> None:
    name = module.split(".")[-2]
    why = f"unavailable: {error}; install the extras with `pip install -e '.[test]'`"
    p = sub.add_parser(name, help=why, description=why)
    p.set_defaults(func=lambda args: _fail(name, why))


def _fail(command: str, message: str) -> int:
    print(f"reflow {command}: error: {message}", file=sys.stderr)
    return 1


def _version() -> str:
    from reflow import __version__

    return __version__


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    try:
        result: int = func(args)
    except ReflowError as e:  # a user-facing error: its message says what is wrong and how to fix it
        return _fail(args.command, str(e))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return result


if __name__ == "__main__":
    sys.exit(main())
