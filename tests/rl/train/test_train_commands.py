"""``reflow train`` / ``reflow eval`` smoke tests: files written, numbers printed, errors reported."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reflow.cli import main


@pytest.mark.usefixtures("no_leaks")
def test_train_then_eval(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    rc = main(["train", "CartPole-v1", "--envs", "4", "--workers", "2", "--steps", "2000", "--out", str(out)])
    assert rc == 0
    printed = capsys.readouterr().out
    assert str(out / "model.pt") in printed and str(out / "curve.png") in printed
    log = json.loads((out / "log.json").read_text())
    assert log["algo"] == "ppo" and log["steps"] >= 2000 and log["reached_target"] is False
    assert len(log["episode_returns"]) > 0 and log["curve"]
    assert (out / "curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["eval", str(out / "model.pt"), "--episodes", "3"]) == 0
    assert "3 episodes: mean return" in capsys.readouterr().out


def test_cli_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "CartPole-v1", "--algo", "a2c", "--out", str(tmp_path)]) == 1
    assert "unknown algo 'a2c'" in capsys.readouterr().err
    assert main(["train", "Pendulum-v1", "--algo", "dqn", "--out", str(tmp_path)]) == 1
    assert "needs a Discrete action space" in capsys.readouterr().err
    assert main(["eval", str(tmp_path / "missing.pt")]) == 1
    assert "does not exist" in capsys.readouterr().err
