"""``reflow recurrent``: explain, run or draw a recurrent-tensor program file.

A program file defines ``program(**options) -> Program`` (compiled with its default bounds); ``--arg
key=value`` passes options to it (ints, floats, or strings), e.g. ``--arg episode_len=100``.
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import sys
from pathlib import Path
from typing import Any

from reflow.errors import RecurrentError


def _value(text: str) -> Any:
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return {"none": None, "true": True, "false": False}.get(text.lower(), text)


def parse_args(pairs: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for p in pairs:
        key, sep, val = p.partition("=")
        if not sep or not key.isidentifier():
            raise RecurrentError(f"--arg {p!r}: write it as key=value, e.g. --arg episode_len=100")
        out[key] = _value(val)
    return out


def load_program(path: str | Path, args: dict[str, Any], memory_budget: int | None = None) -> Any:
    """Import a program file and call its ``program(**args)``."""
    file = Path(path)
    if not file.is_file():
        raise RecurrentError(f"program file {file} does not exist")
    name = f"reflow_recurrent_{re.sub(r'[^0-9A-Za-z_]', '_', file.stem)}"
    folder = str(file.resolve().parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    spec = importlib.util.spec_from_file_location(name, file)
    if spec is None or spec.loader is None:
        raise RecurrentError(f"cannot import program file {file}; it must be a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    make = getattr(module, "program", None)
    if not callable(make):
        raise RecurrentError(f"{file} defines no program(): define `program(**options) -> Program` returning "
                             "ctx.compile(...)")
    if memory_budget is not None:
        args = {**args, "memory_budget": memory_budget}
    return make(**args)


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "recurrent", help="explain, run or draw a recurrent-tensor program (RL as recurrence equations)",
        description="Recurrent-tensor programs: a file defines program(**options) returning a compiled "
        "reflow.recurrent Program. `explain` prints its dependence graph before and after the passes and its "
        "schedule; `run` runs it; `graph` draws it (SVG or DOT).")
    sub = p.add_subparsers(dest="action", metavar="<action>", required=True)
    for action, text in (("explain", "print the graph before/after the passes and the schedule"),
                         ("run", "run the program and print its log"),
                         ("graph", "draw the dependence graph after the passes")):
        a = sub.add_parser(action, help=text, description=text)
        a.add_argument("file", help="Python file defining program(**options)")
        a.add_argument("--arg", action="append", default=[], metavar="KEY=VALUE",
                       help="an option for program(), e.g. --arg episode_len=100 (repeatable)")
        a.add_argument("--memory-budget", type=int, default=None, metavar="BYTES",
                       help="keep the values the schedule holds under this many bytes (stream and offload)")
        if action == "graph":
            a.add_argument("--out", "-o", default="recurrent.svg", help="output file, .svg or .dot")
        if action == "run":
            a.add_argument("--progress", action="store_true", help="show a progress bar of iterations")
        a.set_defaults(func=_command)


def _command(args: argparse.Namespace) -> int:
    prog = load_program(args.file, parse_args(args.arg), args.memory_budget)
    if args.action == "explain":
        print(prog.explain(), end="")
        return 0
    if args.action == "graph":
        from reflow.graph.export import write_graph
        from reflow.recurrent.explain import drawable

        path = write_graph(drawable(prog.graph), args.out)
        print(f"reflow recurrent graph: wrote {path}: {len(prog.graph)} nodes, {len(prog.graph.edges)} "
              "dependences (recurrences drawn without their back edges)")
        return 0
    result = prog.run(progress=args.progress)
    for rec in result.logs:
        print("  ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in rec.items()))
    peak = result.stats.get("peak_tracked_bytes", 0)
    print(f"reflow recurrent run: {len(result.logs)} log records in {result.seconds:.2f} s; values held "
          "peaked "
          f"at {peak / 2**20:.1f} MiB")
    return 0
