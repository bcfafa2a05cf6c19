"""``reflow wield``: run an evaluation suite into the experiment store, and report on experiments."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def register(subparsers: Any) -> None:
    """Add ``wield`` (with ``run`` and ``report``) to the ``reflow`` command."""
    w = subparsers.add_parser(
        "wield",
        help="repeatable RL evaluation: run seeds x envs in parallel, report IQM with CIs",
        description="Wield: run an agent over K seeds and several envs on worker processes, store every "
        "run (config, seed, code revision, learning curve) in an sqlite file, and report interquartile means "
        "with stratified bootstrap confidence intervals, performance profiles and a significance test "
        "between two experiments. See docs/wield.md.",
        epilog="examples:\n  reflow wield run suite.toml --workers 2\n"
        "  reflow wield report ppo-zoo --out report/\n  reflow wield report ppo-zoo ppo-tweaked --out cmp/",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = w.add_subparsers(title="actions", metavar="<action>", dest="action", required=True)
    r = sub.add_parser("run", help="run a suite file (TOML or YAML) into the store")
    r.add_argument(
        "suite", type=Path, help="suite file: name, algo, envs, seeds, steps, [algo] hyper-parameters"
    )
    r.add_argument("--workers", "-w", type=int, default=1, help="runs at a time, each in its own process")
    r.add_argument(
        "--db", type=Path, default=Path("wield.sqlite"), help="experiment store (default wield.sqlite)"
    )
    r.set_defaults(func=_run_cmd)
    p = sub.add_parser(
        "report", help="write report.md, curves.png and profile.png for one or two experiments"
    )
    p.add_argument("experiments", nargs="+", help="one experiment, or two to compare")
    p.add_argument(
        "--db", type=Path, default=Path("wield.sqlite"), help="experiment store (default wield.sqlite)"
    )
    p.add_argument(
        "--out", type=Path, default=Path("wield-report"), help="output folder (default wield-report)"
    )
    p.set_defaults(func=_report_cmd)


def _run_cmd(args: argparse.Namespace) -> int:
    from reflow.wield.store import Store
    from reflow.wield.suite import load_suite, run_suite

    suite = load_suite(args.suite)
    with Store(args.db) as store:
        ids = run_suite(suite, store, args.workers)
        runs = [r for r in store.runs(suite.name) if r.id in set(ids)]
    for env in suite.envs:
        scores = [r.score for r in runs if r.env_id == env]
        print(f"{suite.name} {env}: {len(scores)} runs, scores {', '.join(f'{s:.1f}' for s in scores)}")
    print(f"stored {len(ids)} runs in {args.db}; report: reflow wield report {suite.name} --db {args.db}")
    return 0


def _report_cmd(args: argparse.Namespace) -> int:
    from reflow.errors import WieldError
    from reflow.wield.report import write_report
    from reflow.wield.store import Store

    if len(args.experiments) > 2:
        raise WieldError(f"report one experiment or compare two, not {len(args.experiments)}")
    if not args.db.is_file():
        raise WieldError(
            f"experiment store {args.db} does not exist; run `reflow wield run SUITE --db {args.db}`"
        )
    with Store(args.db) as store:
        md = write_report({e: store.runs(e) for e in args.experiments}, args.out)
    print(md.read_text())
    print(f"\nwrote {md}, {args.out / 'curves.png'}, {args.out / 'profile.png'}", file=sys.stderr)
    return 0
