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


def _explain(capsys: object, *flags: str) -> str:
    pipeline = str(HERE / "every_pass_pipeline.py")
    assert cli.main(["serve", pipeline, "--explain", "--workers", "2", *flags]) == 0
    out: str = capsys.readouterr().out  # type: ignore[attr-defined]
    return out.split("after (stages on 2 workers):")[1]


def test_each_pass_can_be_turned_off_and_explain_shows_the_plan_it_makes(capsys: object) -> None:
    on = _explain(capsys)
    assert "[lookup_weights -> score -> model]" in on  # fusion, starting a stage at the keyed lookup
    assert "routed by cached keys of weights" in on and "batch 8 (wait 2 ms)" in on
    assert "slow#1" in on and "slow#2" in on and "[slow] in the server" in on
    assert "slow#1] on workers [0, 1] (home 0)" in on and "slow#2] on workers [0, 1] (home 1)" in on  # apart
    off = {flag: _explain(capsys, flag) for flag in ("--no-fusion", "--no-compete", "--no-locality",
                                                     "--no-batching", "--no-placement", "--whole")}
    assert "fusion:" not in off["--no-fusion"] and "[score] on" in off["--no-fusion"]
    assert "slow#" not in off["--no-compete"] and "races" not in off["--no-compete"]
    assert "routed by" not in off["--no-locality"]
    assert "[bucket -> lookup_weights -> score -> model]" in off["--no-locality"]  # no break at the lookup
    assert "batching off" in off["--no-batching"] and "wait 0 ms" in off["--no-batching"]
    assert "placement:" not in off["--no-placement"] and "home" not in off["--no-placement"]
    assert "slow#1] on workers [0, 1]" in off["--no-placement"]
    assert "[bucket -> lookup_weights -> score -> model -> slow]" in off["--whole"]
    assert "compete skipped" in off["--whole"]
    for flag, plan in off.items():
        assert plan != on, flag


def test_flags_become_serve_options() -> None:
    from reflow.serve.commands import options_from

    parse = cli.build_parser().parse_args
    o = options_from(parse(["serve", "p.py", "--workers", "3", "--no-locality", "--deadline-ms", "50",
                            "--max-inflight", "7", "--max-body-bytes", "100", "--ray", "HOST:6379"]))
    assert (o.workers, o.deadline_ms, o.max_inflight, o.max_body_bytes) == (3, 50.0, 7, 100)
    assert o.ray == "HOST:6379"
    assert not o.optimize.locality and o.optimize.fusion and o.optimize.compete
    assert options_from(parse(["serve", "p.py", "--ray"])).ray == "local"  # a private Ray on this machine
    assert options_from(parse(["serve", "p.py"])).ray is None  # worker processes, no Ray
