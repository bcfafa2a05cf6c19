"""``reflow train`` and ``reflow eval`` under a real Ctrl-C (SIGINT to the whole process group, as a terminal
sends it): while training, while the env workers start, while evaluating; and negative targets."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import gymnasium as gym
import pytest

from reflow.cli import main
from reflow.components import from_space
from reflow.rl.algos import AGENTS, make_agent
from reflow.rl.checkpoint import save_checkpoint

SRC = str(Path(__file__).resolve().parents[3] / "src")
ENVS = str(Path(__file__).resolve().parents[1] / "envs")  # rl_faulty_envs


def launch(args: list[str], **env: str) -> subprocess.Popen[str]:
    """``reflow ARGS`` in a process group of its own (its workers and fork server join it)."""
    cmd = [sys.executable, "-c", "import sys; from reflow.cli import main; sys.exit(main())", *args]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": f"{SRC}:{ENVS}", **env}, start_new_session=True)


def wait_for(path: Path, proc: subprocess.Popen[str]) -> None:
    """Until ``path`` exists (the env touched it: the run is where the test wants it)."""
    deadline = time.monotonic() + 120
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def assert_group_gone(group: int) -> None:
    """Nothing of the run is left: no worker, no fork server."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.killpg(group, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    pytest.fail("processes of the interrupted run are still alive")


def test_ctrl_c_stops_cleanly_and_saves_the_run(tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = launch(["train", "CartPole-v1", "--envs", "4", "--workers", "2", "--keep-workers", "--steps",
                   "10000000", "--target-return", "none", "--out", str(out)])
    group = proc.pid  # its own process group: the workers and the fork server are in it too
    assert proc.stderr is not None
    seen = ""
    while "ret=" not in seen:  # the progress bar shows returns: episodes have ended, training runs
        line = proc.stderr.read(1)
        assert line or proc.poll() is None, seen
        seen += line
    time.sleep(0.5)
    os.killpg(group, signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    stderr = seen + stderr
    assert proc.returncode == 130, stderr
    assert "interrupted after" in stderr and "saved the run so far" in stderr
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr, stderr
    log = json.loads((out / "log.json").read_text())
    assert log["interrupted"] is True and 0 < log["steps"] < 10_000_000 and log["episode_returns"]
    assert (out / "model.pt").stat().st_size > 0 and str(out / "model.pt") in stdout
    assert_group_gone(group)
    assert main(["eval", str(out / "model.pt"), "--episodes", "2"]) == 0  # the checkpoint loads


def test_ctrl_c_while_the_workers_start(tmp_path: Path, no_leaks: None) -> None:
    """Before any step: nothing to save, exit 130, the starting worker (busy in its env's constructor) and
    the bank's shared memory gone with it."""
    mark, out = tmp_path / "mark", tmp_path / "run"
    proc = launch(["train", "rl_faulty_envs:reflow-test/SlowStart-v0", "--envs", "4", "--workers", "2",
                   "--keep-workers", "--steps", "5000", "--out", str(out)], REFLOW_TEST_MARK=str(mark))
    wait_for(mark, proc)  # worker 1 is making its envs; the caller waits for it
    os.killpg(proc.pid, signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "interrupted: stopped before a step ended; nothing saved" in stderr
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr, stderr
    assert not (out / "model.pt").exists()
    assert_group_gone(proc.pid)


def test_ctrl_c_while_evaluating(tmp_path: Path, no_leaks: None) -> None:
    mark, model = tmp_path / "mark", tmp_path / "model.pt"
    env = gym.make("CartPole-v1")  # an untrained PPO agent's checkpoint for the slow CartPole
    obs, act = from_space(env.observation_space), from_space(env.action_space)
    agent = make_agent("ppo", obs, act, AGENTS["ppo"][1](), 4, seed=0, learner=False)
    save_checkpoint(model, "rl_faulty_envs:reflow-test/SlowStep-v0", agent)
    proc = launch(["eval", str(model), "--episodes", "4"], REFLOW_TEST_MARK=str(mark))
    wait_for(mark, proc)  # stepping the evaluation episodes
    os.killpg(proc.pid, signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert stderr.strip().endswith("interrupted") and "episodes: mean return" not in stdout
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr, stderr
    assert_group_gone(proc.pid)


def test_negative_targets_are_targets(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"  # any CartPole return beats -1: reached after the first 20 episodes
    rc = main(["train", "CartPole-v1", "--envs", "4", "--steps", "50000", "--target-return", "-1",
               "--out", str(out)])
    assert rc == 0
    log = json.loads((out / "log.json").read_text())
    assert log["target_return"] == -1 and log["reached_target"] is True and log["steps"] < 5000
    assert "reached target -1.0" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["train", "CartPole-v1", "--target-return", "high", "--out", str(out)])
    assert "not a number or 'none'" in capsys.readouterr().err


def test_a_worker_that_dies_in_training_is_a_worker_crash(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Not a reaction error wrapping BrokenPipeError: the CLI names the worker and its envs."""
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "envs"))  # rl_faulty_envs
    rc = main(["train", "rl_faulty_envs:reflow-test/DiesInWorker-v0", "--envs", "4", "--workers", "2",
               "--keep-workers", "--steps", "2000", "--out", str(tmp_path)])
    assert rc == 1
    err = capsys.readouterr().err
    assert "error: worker 1 (envs 2..3 of 'rl_faulty_envs:reflow-test/DiesInWorker-v0') died (exit code 3)" \
        in err
    assert "BrokenPipe" not in err and "Traceback" not in err
