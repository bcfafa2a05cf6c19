"""The ``reflow`` command itself: help lists every front end, and failures are one clear line, not a trace."""

from __future__ import annotations

import subprocess
import sys

import pytest

from reflow import cli


def test_help_lists_every_command() -> None:
    out = subprocess.run([sys.executable, "-m", "reflow.cli", "--help"], capture_output=True, text=True,
                         check=True).stdout
    for command in ("run", "graph", "parallelize", "envs", "train", "eval"):
        assert f"    {command}" in out


def test_a_command_whose_dependencies_are_missing_says_so(monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(cli, "COMMAND_MODULES", (*cli.COMMAND_MODULES, "reflow.nothere.commands"))
    assert cli.main(["nothere"]) == 1
    err = capsys.readouterr().err
    assert "reflow nothere: error: unavailable" in err and "reflow.nothere" in err
    assert cli.build_parser().parse_args(["run", "x.py"]).command == "run"  # the others still work


def test_a_reflow_error_is_one_line_and_exit_code_1(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["graph", "no_such_program.py", "--out", "g.svg"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no_such_program.py" in err[0] and "Traceback" not in err[0]
