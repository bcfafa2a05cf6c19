"""The ``reflow`` command: one sub-command per front end, plus ``bench``.

Each front end owns a small module with ``register(subparsers)``; it adds its sub-command(s) and sets
``func`` on the parser to a function ``(args) -> int``. Those modules import heavy packages (torch, onnx, ray)
only inside the command functions, so ``reflow --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# The front ends' command modules, in the order they appear in ``reflow --help``.
COMMAND_MODULES: tuple[str, ...] = (
    "reflow.reactor.commands",
    "reflow.onnx.commands",
    "reflow.rl.envs.commands",
    "reflow.rl.commands",
)

EPILOG = """\
examples:
  reflow run examples/reactors/pipeline.py          run a reactor program
  reflow graph examples/reactors/pipeline.py --out g.svg   draw its reaction graph
  reflow <command> --help                           options of one command
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
    sub = parser.add_subparsers(title="commands", metavar="<command>")
    for mod in COMMAND_MODULES:
        importlib.import_module(mod).register(sub)
    return parser


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
    result: int = func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
