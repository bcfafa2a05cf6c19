"""Claim: a change to the reactor scheduler costs no time per reaction (or says how much), against a base.

The scheduling overhead moves by 10-30% between runs on a shared 2-core VM, so two separate runs of
``reaction_overhead.py`` cannot show a 5% change. This script loads the base revision's ``reflow``
(``git archive REV src/reflow``, as ``transport_ab.py`` does) as a second package, ``reflow_base``, beside
the working tree's, builds the shapes of ``reaction_overhead.py`` (a 10-deep chain, a 16-wide fan-out on 1
and 2 worker threads, and a timer that schedules a logical action) against each, and alternates runs of the
two in blocks, so both see the same machine minute by minute. Per shape it reports the median over blocks of
the time per reaction for base and working tree, and the median of their per-block ratio (below 1: the working
tree is faster).

    flock -x /tmp/reflow-cpu.lock .venv/bin/python benchmarks/reaction_ab.py --base main~5 [--blocks 15]
        [--tags 2000] [--quick]

Writes results/reaction_ab.json.
"""

from __future__ import annotations

import argparse
import importlib
import json
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from reaction_overhead import DEPTH, WIDTH, programs
from tqdm import tqdm
from transport_ab import export_base


def shapes(pkg: ModuleType) -> dict[str, tuple[Callable[[], Any], int, int]]:
    """The programs built against reactor package ``pkg``: name -> (make, workers, reactions per tag)."""
    Chain, Fan = programs(pkg)

    class Echo(pkg.Reactor):  # type: ignore[misc, name-defined]
        """A timer reaction schedules a logical action for the next microstep (an action's path)."""

        def __init__(self) -> None:
            super().__init__("main")
            self.t = self.timer("t", 0, 1)
            self.again = self.logical_action("again")
            self.n = 0

        @pkg.reaction(triggers="t", effects="again")
        def send(self) -> None:
            self.again.schedule(self.n)

        @pkg.reaction(triggers="again")
        def count(self) -> None:
            self.n += 1

    return {f"chain ({DEPTH} deep), 1 worker": (lambda: Chain(DEPTH), 1, DEPTH + 1),
            f"fan-out ({WIDTH} wide), 1 worker": (lambda: Fan(WIDTH), 1, WIDTH + 1),
            f"fan-out ({WIDTH} wide), 2 workers": (lambda: Fan(WIDTH), 2, WIDTH + 1),
            "timer + action, 1 worker": (Echo, 1, 2)}


def time_run(pkg: ModuleType, make: Callable[[], Any], workers: int, tags: int) -> float:
    main = make()
    t0 = time.perf_counter()
    result = pkg.run(main, workers=workers, timeout=tags - 1)
    elapsed = time.perf_counter() - t0
    assert result.stats.tags >= tags
    return elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", default="HEAD", help="the git revision to compare the working tree with "
                    "(default HEAD: with a clean tree, a check that the harness favours neither side)")
    ap.add_argument("--blocks", type=int, default=15, help="alternating blocks per side (default 15)")
    ap.add_argument("--tags", type=int, default=2000, help="tags per run (default 2000)")
    ap.add_argument("--quick", action="store_true", help="4 blocks of 300 tags")
    ap.add_argument("--out", default="results/reaction_ab.json")
    args = ap.parse_args()
    blocks, tags = (4, 300) if args.quick else (args.blocks, args.tags)
    with tempfile.TemporaryDirectory(prefix="reaction-ab-") as tmp:
        sys.path.insert(0, str(export_base(args.base, Path(tmp))))
        sides = {"base": importlib.import_module("reflow_base.reactor"),
                 "work": importlib.import_module("reflow.reactor")}
        programs = {side: shapes(pkg) for side, pkg in sides.items()}
        names = list(programs["work"])
        per_reaction: dict[str, dict[str, list[float]]] = {n: {"base": [], "work": []} for n in names}
        for block in tqdm(range(blocks), desc="blocks"):
            order = ("base", "work") if block % 2 == 0 else ("work", "base")
            for name in names:
                for side in order:
                    make, workers, per_tag = programs[side][name]
                    per_reaction[name][side].append(time_run(sides[side], make, workers, tags)
                                                    / (tags * per_tag))
    rows = []
    for name in names:
        base, work = per_reaction[name]["base"], per_reaction[name]["work"]
        ratios = [w / b for w, b in zip(work, base, strict=True)]
        rows.append({"shape": name, "base_us": statistics.median(base) * 1e6,
                     "work_us": statistics.median(work) * 1e6, "ratio": statistics.median(ratios),
                     "ratio_min": min(ratios), "ratio_max": max(ratios)})
    print(f"\nbase {args.base} vs working tree, {blocks} blocks of {tags} tags, per reaction (median):")
    print(f"{'shape':34} {'base':>9} {'work':>9} {'work/base':>10} {'range':>13}")
    for r in rows:
        print(f"{r['shape']:34} {r['base_us']:6.2f} us {r['work_us']:6.2f} us {r['ratio']:10.3f} "
              f"{r['ratio_min']:6.2f}-{r['ratio_max']:.2f}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"machine": platform.platform(), "python": platform.python_version(), "base": args.base,
            "blocks": blocks, "tags": tags}
    out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
