"""The experiment store: every run of every suite in one sqlite file, so results can be compared later.

Tables: ``runs`` (experiment name, algorithm, env, seed, the full config as JSON, the code revision, the
final score and its measure, env steps, seconds, when) and ``curves`` (run, env steps, mean recent return).
The code revision is ``git describe --always --dirty`` of the source tree, or "unknown" outside git.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reflow.errors import WieldError

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY,
    experiment TEXT NOT NULL,
    algo TEXT NOT NULL,
    env_id TEXT NOT NULL,
    seed INTEGER NOT NULL,
    config TEXT NOT NULL,
    revision TEXT NOT NULL,
    score REAL NOT NULL,
    steps INTEGER NOT NULL,
    seconds REAL NOT NULL,
    reached_target INTEGER NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS curves (
    run INTEGER NOT NULL REFERENCES runs(id),
    step INTEGER NOT NULL,
    value REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS curves_run ON curves(run);
"""


def code_revision() -> str:
    """``git describe --always --dirty`` of the tree this module lives in."""
    try:
        out = subprocess.run(
            ["git", "describe", "--always", "--dirty"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() or "unknown"


@dataclass(frozen=True)
class Run:
    """One stored run."""

    id: int
    experiment: str
    algo: str
    env_id: str
    seed: int
    config: dict[str, Any]
    revision: str
    score: float
    steps: int
    seconds: float
    reached_target: bool
    curve: list[tuple[int, float]]


class Store:
    """An sqlite file of runs; use as a context manager (or call ``close``)."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.db = sqlite3.connect(self.path)
            self.db.executescript(SCHEMA)
        except sqlite3.DatabaseError as e:
            raise WieldError(
                f"experiment store {self.path} is not an sqlite database ({e}); give a new file name"
            ) from e

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.db.close()

    def add(
        self,
        experiment: str,
        algo: str,
        env_id: str,
        seed: int,
        config: dict[str, Any],
        score: float,
        steps: int,
        seconds: float,
        reached_target: bool,
        curve: list[tuple[int, float]],
        revision: str | None = None,
    ) -> int:
        """Store one run and its curve; returns its id."""
        with self.db:
            cur = self.db.execute(
                "INSERT INTO runs (experiment, algo, env_id, seed, config, revision, score, steps, seconds, "
                "reached_target, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    experiment,
                    algo,
                    env_id,
                    seed,
                    json.dumps(config, sort_keys=True),
                    revision or code_revision(),
                    score,
                    steps,
                    seconds,
                    int(reached_target),
                    time.time(),
                ),
            )
            run = int(cur.lastrowid or 0)
            self.db.executemany(
                "INSERT INTO curves (run, step, value) VALUES (?, ?, ?)",
                [(run, int(s), float(v)) for s, v in curve],
            )
        return run

    def experiments(self) -> list[str]:
        return [r[0] for r in self.db.execute("SELECT DISTINCT experiment FROM runs ORDER BY experiment")]

    def runs(self, experiment: str | None = None) -> list[Run]:
        """Runs of one experiment (all if None), ordered by env, then seed."""
        query = (
            "SELECT id, experiment, algo, env_id, seed, config, revision, score, steps, seconds, "
            "reached_target FROM runs"
        )
        rows = (
            self.db.execute(query + " WHERE experiment = ? ORDER BY env_id, seed, id", (experiment,))
            if experiment is not None
            else self.db.execute(query + " ORDER BY experiment, env_id, seed, id")
        )
        out = []
        for r in rows.fetchall():
            curve = [
                (int(s), float(v))
                for s, v in self.db.execute(
                    "SELECT step, value FROM curves WHERE run = ? ORDER BY step", (r[0],)
                )
            ]
            out.append(
                Run(
                    r[0], r[1], r[2], r[3], r[4], json.loads(r[5]), r[6], r[7], r[8], r[9], bool(r[10]), curve
                )
            )
        if experiment is not None and not out:
            known = self.experiments()
            raise WieldError(f"experiment store {self.path} has no runs of {experiment!r}; it has {known}")
        return out
