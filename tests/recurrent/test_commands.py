"""``reflow recurrent explain/run/graph FILE`` and ``reflow graph FILE`` on the example programs."""

from __future__ import annotations

from pathlib import Path

import pytest

from reflow import cli

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "recurrent"


def test_explain_shows_graph_passes_and_schedule(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["recurrent", "explain", str(EXAMPLES / "reinforce.py"), "--arg", "episode_len=20",
                     "--arg", "n=4", "--arg", "iterations=2"]) == 0
    out = capsys.readouterr().out
    for part in ("== dependence graph as written", "== passes ==", "incrementalize", "== schedule ==",
                 "for i forward:", "for t forward:", "all b, t at once"):
        assert part in out, part


def test_run_prints_the_log(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["recurrent", "run", str(EXAMPLES / "reinforce.py"), "--arg", "episode_len=20",
                     "--arg", "iterations=2", "--arg", "num_envs=2", "--memory-budget", "20000"]) == 0
    out = capsys.readouterr().out
    assert out.count("episode_return=") == 2 and "values held peaked" in out


def test_graph_draws_the_program(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "reinforce.svg"
    assert cli.main(["recurrent", "graph", str(EXAMPLES / "reinforce.py"), "-o", str(out), "--arg",
                     "episode_len=20"]) == 0
    assert out.read_text().startswith("<svg") and "recurrence" in out.read_text()
    dot = tmp_path / "dqn.dot"
    assert cli.main(["graph", str(EXAMPLES / "dqn.py"), "--out", str(dot)]) == 0
    assert dot.read_text().startswith("digraph")


def test_bad_files_and_arguments_are_explained(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "empty.py"
    empty.write_text("x = 1\n")
    assert cli.main(["recurrent", "explain", str(empty)]) == 1
    assert "defines no program()" in capsys.readouterr().err
    assert cli.main(["recurrent", "explain", str(EXAMPLES / "ppo.py"), "--arg", "steps"]) == 1
    assert "key=value" in capsys.readouterr().err
