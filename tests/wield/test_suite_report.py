"""A suite runs seeds x envs on worker processes into the sqlite store (each run equal to the same run on
its own), and the report aggregates them, plots them and compares two experiments."""

from __future__ import annotations

from pathlib import Path

import pytest

from reflow.cli import main
from reflow.errors import WieldError
from reflow.rl.config import resolve
from reflow.rl.train import train
from reflow.wield.store import Store
from reflow.wield.suite import Suite, load_suite, run_suite

SUITE = """
name = "{name}"
algo = "ppo"
envs = ["CartPole-v1", "MountainCar-v0"]
seeds = 2
num_envs = 2
steps = 448
[ppo]
num_steps = 32
epochs = {epochs}
"""


@pytest.mark.usefixtures("no_leaks")
def test_suite_store_and_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for name, epochs, workers in (("a", 2, "2"), ("b", 4, "1")):  # a: on worker processes; b: in this one
        (tmp_path / f"{name}.toml").write_text(SUITE.format(name=name, epochs=epochs))
        assert main(["wield", "run", str(tmp_path / f"{name}.toml"), "--workers", workers,
                     "--db", str(tmp_path / "w.sqlite")]) == 0
    with Store(tmp_path / "w.sqlite") as store:
        runs = store.runs("a")
        assert store.experiments() == ["a", "b"]
    assert [(r.env_id, r.seed) for r in runs] == [("CartPole-v1", 0), ("CartPole-v1", 1),
                                                  ("MountainCar-v0", 0), ("MountainCar-v0", 1)]
    assert all(r.config["ppo"]["epochs"] == 2 and r.revision and r.curve for r in runs)
    # a run from the pool equals the same run made here, in this process
    cfg = resolve("CartPole-v1", "ppo", None, {"seed": 1, "total_steps": 448, "num_envs": 2,
                                                "ppo": {"num_steps": 32, "epochs": 2}})
    alone = train(cfg.__class__(**{**cfg.__dict__, "target_return": None}))
    pooled = next(r for r in runs if r.env_id == "CartPole-v1" and r.seed == 1)
    assert pooled.curve == [(s, v) for s, v in alone.curve]
    capsys.readouterr()
    db, out = str(tmp_path / "w.sqlite"), str(tmp_path / "r")
    assert main(["wield", "report", "a", "b", "--db", db, "--out", out]) == 0
    md = (tmp_path / "r" / "report.md").read_text()
    assert "| a | CartPole-v1 | 2 |" in md and "## a vs b" in md and "permutation test" in md
    for png in ("curves.png", "profile.png"):
        assert (tmp_path / "r" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bad_suites_and_stores(tmp_path: Path) -> None:
    (tmp_path / "s.toml").write_text('name = "x"\nalgo = "ppo"\nenvs = ["CartPole-v1"]\n')
    with pytest.raises(WieldError, match=r"lacks \['steps'\]"):
        load_suite(tmp_path / "s.toml")
    (tmp_path / "s.toml").write_text('name = "x"\nalgo = "ppo"\nenvs = ["CartPole-v1"]\nsteps = 5\nlr = 1\n')
    with pytest.raises(WieldError, match=r"unknown key\(s\) \['lr'\]"):
        load_suite(tmp_path / "s.toml")
    (tmp_path / "junk.sqlite").write_bytes(b"not a database at all" * 10)
    with pytest.raises(WieldError, match="is not an sqlite database"):
        Store(tmp_path / "junk.sqlite").runs()
    with Store(tmp_path / "empty.sqlite") as store:
        with pytest.raises(WieldError, match="has no runs of 'nope'"):
            store.runs("nope")
        with pytest.raises(WieldError, match="workers must be >= 1"):
            run_suite(Suite("x", "ppo", ("CartPole-v1",), (0,), 10), store, workers=0)
