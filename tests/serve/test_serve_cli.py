"""``reflow serve`` as a user runs it: a pipeline file served on a port, then stopped with SIGTERM."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

from reflow import cli

HERE = Path(__file__).parent
PIPELINE = HERE / "tiny_pipeline.py"


def test_serve_a_pipeline_file_then_stop_it_gracefully(no_leaks: None) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen([sys.executable, "-m", "reflow.cli", "serve", str(PIPELINE), "--port", "0",
                             "--workers", "1"], stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        m = re.search(r"ready on (http://\S+) \(1 workers\)", line)
        assert m, line
        body = json.dumps({"rows": [{"word": w} for w in ("a", "bb", "cc", "d")]}).encode()
        req = urllib.request.Request(m.group(1) + "/", data=body,
                                     headers={"content-type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as r:
            assert json.loads(r.read())["rows"] == [{"length": 1, "n": 2}, {"length": 2, "n": 2}]
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0


def test_explain_prints_the_plan_before_and_after(capsys: object) -> None:
    assert cli.main(["serve", str(PIPELINE), "--explain", "--workers", "2"]) == 0
    out = capsys.readouterr().out  # type: ignore[attr-defined]
    assert "before (operators):" in out and "after (stages on 2 workers):" in out
    assert "length" in out and "groupby length agg n=count()" in out


def test_a_file_without_a_flow_is_one_clear_line(tmp_path: Path, capsys: object) -> None:
    bad = tmp_path / "nothing.py"
    bad.write_text("x = 1\n")
    assert cli.main(["serve", str(bad), "--explain"]) == 1
    err = capsys.readouterr().err.strip().splitlines()  # type: ignore[attr-defined]
    assert len(err) == 1 and "nothing.py defines no flow" in err[0]
    assert cli.main(["serve", str(tmp_path / "missing.py")]) == 1
