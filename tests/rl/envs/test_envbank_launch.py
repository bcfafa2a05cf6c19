"""How workers start: scripts read from standard input or without a ``__main__`` guard work (nothing of the
caller's script runs again in a worker), and a bank on a busy machine steps in fewer processes."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from reflow.errors import OversubscribedWarning
from reflow.rl import make_vec

SRC = str(Path(__file__).resolve().parents[3] / "src")

# A user's script as people write them: an env class, a constructor and a registration in the script itself,
# no ``if __name__ == "__main__":`` guard. It prints once per run of its top level (once in all, since the
# workers never run it), then whether its envs stepped in a worker process.
SCRIPT = '''
import os
import gymnasium as gym
import numpy as np
from reflow.rl import make_vec

print("top level ran in", os.getpid())

class Counter(gym.Env):
    observation_space = gym.spaces.Box(0, 1000, (1,), np.float32)
    action_space = gym.spaces.Discrete(2)
    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.zeros(1, np.float32), {"pid": os.getpid()}
    def step(self, action):
        self.t += 1 + int(action)
        return np.full(1, self.t, np.float32), 1.0, self.t >= 5, False, {}

gym.register("Script-Counter-v0", entry_point=Counter)

def thunk():
    return gym.wrappers.RecordEpisodeStatistics(Counter())

for env in (make_vec("Script-Counter-v0", 4, num_workers=2, fit_workers=False),
            make_vec([thunk] * 4, num_workers=2, fit_workers=False)):
    obs, info = env.reset(seed=0)
    for _ in range(6):
        obs, *_ = env.step(np.ones(4, np.int64))
    pids = set(info["pid"].tolist())
    print("obs", obs[:, 0].tolist(), "processes", len(pids), "episodes", env.episode_count)
    env.close()
'''


def run_script(args: list[str], stdin: str | None, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": SRC}
    return subprocess.run([sys.executable, *args], input=stdin, capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=120)


@pytest.mark.parametrize("how", ["stdin", "file"])
def test_scripts_from_stdin_or_without_main_guard_work(how: str, tmp_path: Path) -> None:
    if how == "stdin":
        out = run_script(["-"], SCRIPT, tmp_path)
    else:
        (tmp_path / "train.py").write_text(SCRIPT)
        out = run_script(["train.py"], None, tmp_path)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert sum(line.startswith("top level ran") for line in lines) == 1
    assert lines.count("obs [4.0, 4.0, 4.0, 4.0] processes 2 episodes 4") == 2, out.stdout
    assert "Traceback" not in out.stderr


@pytest.fixture
def busy_cores() -> Iterator[None]:
    """Every core of this machine busy with another process for the test's length."""
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(os.cpu_count() or 1)]
    try:
        yield
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()


def test_a_bank_on_busy_cores_steps_in_the_caller_and_says_so(busy_cores: None) -> None:
    with pytest.warns(OversubscribedWarning, match="cores are free"), \
            make_vec("CartPole-v1", 4, num_workers=2, seed=1) as env:
        stats = env.bank.stats
        assert stats.oversubscribed and stats.workers == 1 and stats.requested_workers == 2
        assert not stats.spinning and "oversubscribed" in stats.describe()
        obs = [env.reset()[0]] + [env.step(np.arange(4) % 2)[0] for _ in range(30)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", OversubscribedWarning)
        with make_vec("CartPole-v1", 4, num_workers=2, seed=1, fit_workers=False) as env:
            assert env.bank.stats.workers == 2 and env.bank.stats.oversubscribed
            again = [env.reset()[0]] + [env.step(np.arange(4) % 2)[0] for _ in range(30)]
    for a, b in zip(obs, again, strict=True):
        np.testing.assert_array_equal(a, b)
