"""``reflow run`` and ``reflow graph``: run a reactor program file, or draw its reaction graph.

A program file exposes its main reactor as a top-level ``main``: preferably a function ``main() -> Reactor``
that builds a fresh program (a reactor runs once), or else a ``Reactor`` instance named ``main``. The file
is imported as a module named after it (``reflow.runtime.loading.import_file``: its folder goes on
``sys.path``, so worker processes can import it too), so code under ``if __name__ == "__main__":`` does not
run.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any

from reflow.errors import ReactorError, ReflowError
from reflow.reactor.reactor import Reactor
from reflow.runtime.loading import import_file
from reflow.runtime.tag import format_ns

_UNITS = {"ns": 1, "us": 1_000, "ms": 1_000_000, "s": 1_000_000_000, "min": 60_000_000_000}


def parse_duration(text: str) -> int:
    """``"2s"``, ``"500ms"``, ``"100us"``, ``"1.5"`` (seconds) -> nanoseconds."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*(ns|us|ms|s|min)?\s*", text)
    if m is None:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r}; use e.g. 2s, 500ms, 100us or 1.5")
    return round(float(m.group(1)) * _UNITS[m.group(2) or "s"])


def load_main(path: str | Path) -> Reactor:
    """The main reactor of program file ``path`` (see the module docstring for the convention)."""
    main = load_object(path)
    if not isinstance(main, Reactor):
        raise ReactorError(f"{path}: main() returned {type(main).__name__}, not a Reactor; make it return "
                           "the top-level reactor")
    return main


def load_object(path: str | Path) -> object:
    """What ``main`` of program file ``path`` is or returns: a Reactor, or anything with a ``graph()``
    method (an agent of ``reflow.components``) for ``reflow graph``."""
    file = Path(path)
    module = import_file(file, "reflow_program", "program file", ReactorError)
    main: Any = getattr(module, "main", None)
    if isinstance(main, Reactor):
        return main
    if callable(main):
        made: object = main()
        return made
    raise ReactorError(f"{file} has no main reactor: define a function `main() -> Reactor` that builds the "
                       "top-level reactor (or a top-level Reactor instance named `main`)")


def register(subparsers: Any) -> None:
    """Add ``run`` and ``graph`` to the ``reflow`` command."""
    p = subparsers.add_parser(
        "run", help="run a reactor program file",
        description="Run a reactor program. The file defines `main() -> Reactor` (or a Reactor named "
        "`main`). Results are identical for any --workers.")
    p.add_argument("file", help="Python file defining main()")
    p.add_argument("--workers", "-w", type=int, default=1, help="reaction worker threads (default 1)")
    p.add_argument("--processes", "-p", type=int, default=0,
                   help="run the reactors in this many worker processes instead of threads (default 0: "
                   "threads); output printed by reactions then comes from the workers")
    p.add_argument("--ray", nargs="?", const="", default=None, metavar="ADDRESS",
                   help="run the reactors on the nodes of a Ray cluster: the one at ADDRESS (as `ray start "
                   "--head` prints it, or 'auto'), else RAY_ADDRESS, else a local Ray started for this run")
    p.add_argument("--timeout", type=parse_duration, default=None,
                   help="stop at this logical time, e.g. 2s, 500ms (default: run until the program stops)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--fast", dest="fast", action="store_true", default=True,
                      help="do not wait for physical time (default)")
    mode.add_argument("--realtime", dest="fast", action="store_false",
                      help="wait for physical time to reach each tag's logical time")
    p.add_argument("--keepalive", action="store_true", default=None,
                   help="keep running when no event is left, until --timeout or a stop request (default: "
                   "only programs with physical actions)")
    p.add_argument("--progress", action="store_true",
                   help="show a progress bar of logical time (of tags processed without --timeout)")
    p.set_defaults(func=_run_cmd)

    g = subparsers.add_parser(
        "graph", help="draw the reaction graph of a reactor program, or an agent's component graph",
        description="Draw a program's reaction graph (one node per reaction) as SVG or DOT, grouped by "
        "level (reactions that may run in parallel) or by the placement of reactors onto --workers worker "
        "processes (what `reflow run --processes` would use). If main() returns a built agent (anything "
        "with a graph() method), its component graph is drawn instead.")
    g.add_argument("file", help="Python file defining main()")
    g.add_argument("--out", "-o", default="reactions.svg", help="output file, .svg or .dot")
    g.add_argument("--color", choices=("level", "placement"), default="level",
                   help="group nodes by level or by placement (default level)")
    g.add_argument("--workers", "-w", type=int, default=2,
                   help="worker processes for --color placement (default 2)")
    g.set_defaults(func=_graph_cmd)


def _run_cmd(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from reflow.reactor.run import run
    from reflow.runtime.tag import MSEC, Tag

    bar = None
    on_tag = None
    if args.progress:
        total = args.timeout / MSEC if args.timeout is not None else None
        bar = tqdm(total=total, unit="ms" if total is not None else "tag", desc="logical time", leave=False)

        def on_tag(tag: Tag) -> None:
            assert bar is not None
            if total is None:
                bar.update(1)
            else:
                bar.update(tag.time / MSEC - bar.n)

    try:
        main = load_main(args.file)
        executor: Any = None
        if args.ray is not None:
            from reflow.runtime.ray_executor import RayExecutor

            executor = RayExecutor(args.ray or None)
        elif args.processes > 0:
            from reflow.runtime.process_executor import ProcessExecutor

            executor = ProcessExecutor(args.processes)
        result = run(main, workers=args.workers, timeout=args.timeout, fast=args.fast, on_tag=on_tag,
                     executor=executor, keepalive=args.keepalive)
    except ReflowError as e:
        print(f"reflow run: error: {e}", file=sys.stderr)
        return 1
    finally:
        if bar is not None:
            bar.close()
    s = result.stats
    where = f"{args.processes} process(es)" if args.processes > 0 else f"{args.workers} worker thread(s)"
    if args.ray is not None:
        where = f"Ray: {executor.describe()}"
    print(f"reflow run: {main.path} stopped at tag {result.final_tag} after {s.tags} tags, {s.reactions} "
          f"reactions ({s.batches} batches, widest {s.max_batch}) in {s.wall_s * 1e3:.1f} ms wall, "
          f"{where}, {'fast' if args.fast else 'real-time'} mode"
          + (f", timeout {format_ns(args.timeout)}" if args.timeout is not None else ""))
    return 0


def _graph_cmd(args: argparse.Namespace) -> int:
    from reflow.graph.clustering import Clustering
    from reflow.graph.export import write_graph
    from reflow.graph.order import level_sets, topo_order
    from reflow.reactor.run import reaction_graph_of

    try:
        main = load_object(args.file)
        if not isinstance(main, Reactor) and callable(getattr(main, "graph", None)):
            return _draw_graph(main.graph(), args.out)  # type: ignore[attr-defined]
        if not isinstance(main, Reactor):
            raise ReactorError(f"{args.file}: main() returned {type(main).__name__}, neither a Reactor nor "
                               "something with a graph() method (such as a built agent)")
        graph = reaction_graph_of(main)
    except ReflowError as e:
        print(f"reflow graph: error: {e}", file=sys.stderr)
        return 1
    if args.color == "level":
        clustering = Clustering(tuple(tuple(level) for level in level_sets(graph)))
    else:  # the placement the process executor would use: reactors (with all their reactions) per worker
        from reflow.runtime.placement import place

        where = place(graph, args.workers)
        order = topo_order(graph)
        groups = [tuple(n for n in order if where[str(graph.node(n).attrs["reactor"])] == w)
                  for w in range(args.workers)]
        clustering = Clustering(tuple(g for g in groups if g))
    write_graph(graph, args.out, clustering=clustering)
    print(f"reflow graph: wrote {args.out}: {len(graph)} reactions, {len(graph.edges)} dependencies, "
          f"{len(clustering.clusters)} {'levels' if args.color == 'level' else 'workers'}")
    return 0


def _draw_graph(graph: Any, out: str) -> int:
    """Draw a logical graph (an agent's components), grouped by level."""
    from reflow.graph.clustering import Clustering
    from reflow.graph.export import write_graph
    from reflow.graph.order import level_sets

    write_graph(graph, out, clustering=Clustering(tuple(tuple(level) for level in level_sets(graph))))
    print(f"reflow graph: wrote {out}: {len(graph)} nodes, {len(graph.edges)} edges (graph {graph.name!r})")
    return 0
