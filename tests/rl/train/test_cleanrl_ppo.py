"""CleanRL's own PPO script (cleanrl_ppo.py: its env line changed to make_vec) at a reduced scale: it runs as
a user would run it, and learns exactly as it does on gymnasium's SyncVectorEnv (same seed: every logged
episode return and loss equal)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SRC = str(HERE.parents[2] / "src")


def run_ppo(vector: str, cwd: Path) -> list[dict[str, Any]]:
    cwd.mkdir()
    args = ["--vector", vector, "--total-timesteps", "1024", "--seed", "3", "--cuda", "false"]
    out = subprocess.run([sys.executable, str(HERE / "cleanrl_ppo.py"), *args], cwd=cwd, capture_output=True,
                         text=True, timeout=300, env={**os.environ, "PYTHONPATH": SRC})
    assert out.returncode == 0, out.stderr
    assert "Traceback" not in out.stderr
    assert "episodic_return=" in out.stdout  # the script found episodes in infos["final_info"]
    (log,) = cwd.glob("runs/*/scalars.jsonl")
    return [json.loads(line) for line in log.read_text().splitlines()]


def test_cleanrl_ppo_learns_the_same_on_make_vec(tmp_path: Path) -> None:
    ours = run_ppo("reflow", tmp_path / "reflow")
    theirs = run_ppo("gymnasium", tmp_path / "gymnasium")

    def without_speed(log: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [e for e in log if e["tag"] != "charts/SPS"]
    assert without_speed(ours) == without_speed(theirs)
    returns = [e["value"] for e in ours if e["tag"] == "charts/episodic_return"]
    assert len(returns) > 20 and [e for e in ours if e["tag"] == "losses/value_loss"]
