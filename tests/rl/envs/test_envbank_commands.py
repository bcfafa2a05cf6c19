"""``reflow envs``: runs, reports, and gives the same checksum for any number of workers."""

from __future__ import annotations

import re

import pytest

from reflow.cli import main


def checksum(out: str) -> str:
    m = re.search(r"reward checksum: (\S+)", out)
    assert m is not None, out
    return m.group(1)


def test_envs_command_is_deterministic_across_workers(capsys: pytest.CaptureFixture[str],
                                                      no_leaks: None) -> None:
    assert main(["envs", "CartPole-v1", "-n", "4", "-w", "1", "--steps", "60", "--seed", "2"]) == 0
    one = capsys.readouterr().out
    assert main(["envs", "CartPole-v1", "-n", "4", "-w", "2", "--steps", "60", "--seed", "2",
                 "--keep-workers"]) == 0
    two = capsys.readouterr().out
    assert "steps/s" in one and "episodes:" in one
    assert checksum(one) == checksum(two)
    assert "processes: 2 of 2 requested workers" in two and "cores free at start" in two


def test_envs_command_unknown_id(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["envs", "CartPol-v1"]) == 1
    assert "did you mean CartPole-v1" in capsys.readouterr().err


def test_envs_command_async_gives_each_env_the_same_steps(capsys: pytest.CaptureFixture[str],
                                                          no_leaks: None) -> None:
    args = ["envs", "CartPole-v1", "-n", "6", "--steps", "50", "--seed", "4"]
    assert main([*args, "-w", "2"]) == 0
    lockstep = capsys.readouterr().out
    assert main([*args, "-w", "3", "--async"]) == 0
    asynchronous = capsys.readouterr().out
    assert "3 workers, asynchronous" in asynchronous
    assert checksum(asynchronous) == checksum(lockstep)
    episodes = re.compile(r"episodes: (\d+)")
    assert episodes.findall(asynchronous) == episodes.findall(lockstep)
    assert main([*args, "-w", "2", "--async", "--slices-per-worker", "3"]) == 0
    sliced = capsys.readouterr().out
    assert checksum(sliced) == checksum(lockstep)
    assert episodes.findall(sliced) == episodes.findall(lockstep)
