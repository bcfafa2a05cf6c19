"""`reflow parallelize` end to end for one worker (no clustering passes needed), its runtime choice and its
input errors."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

import onnx
import pytest

from reflow.errors import OnnxImportError
from reflow.onnx import commands
from reflow.onnx.models import wide_model

pytestmark = pytest.mark.timeout(300)


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="reflow")
    commands.register(parser.add_subparsers())
    return parser.parse_args(argv)


def test_one_worker_writes_a_runnable_module_and_a_summary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "wide.onnx"
    onnx.save(wide_model(3, size=12, channels=16), src)
    module = tmp_path / "generated" / "wide_serial.py"  # a folder that does not exist yet
    args = parse(["parallelize", str(src), "-o", str(module), "--workers", "1"])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    for word in ("nodes", "clusters", "bound", "predicted", "cost model error"):
        assert word in out
    r = subprocess.run([sys.executable, str(module)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "max |serial - parallel| = 0" in r.stdout, r.stderr


def test_light_model_with_random_weights_and_batch(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_py = tmp_path / "sq.py"
    args = parse(
        [
            "parallelize",
            "--light",
            "squeezenet",
            "--random-weights",
            "0",
            "--batch",
            "2",
            "-o",
            str(out_py),
            "--workers",
            "1",
            "--no-profile",
        ]
    )
    assert args.func(args) == 0
    assert 'INPUTS = {"data_0": ((2, 3, 224, 224)' in out_py.read_text()


def test_bad_model_file_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    args = parse(["parallelize", str(bad), "-o", str(tmp_path / "x.py"), "--workers", "1"])
    with pytest.raises(OnnxImportError, match=r"bad\.onnx"):
        args.func(args)


def test_runtime_processes_is_written_into_the_module(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "wide.onnx"
    onnx.save(wide_model(3, size=12, channels=16), src)
    py = tmp_path / "wide_procs.py"
    args = parse(["parallelize", str(src), "-o", str(py), "--workers", "1", "--runtime", "processes"])
    assert args.func(args) == 0
    assert "runtime: processes" in capsys.readouterr().out
    assert 'RUNTIME = "processes"' in py.read_text()
    r = subprocess.run([sys.executable, str(py)], capture_output=True, text=True, timeout=240)
    assert r.returncode == 0 and "= 0 (processes)" in r.stdout, r.stderr


@pytest.mark.parametrize(
    "flag, compiled, says",
    [
        (
            [],
            True,
            "yes, by oneDNN Graph at load (the whole graph on 1 thread(s): compiled 1.000 ms, eager"
            " 2.000 ms)",
        ),
        (["--no-compile"], False, "no (--no-compile)"),
    ],
)
def test_no_compile_keeps_the_module_eager(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    flag: list[str],
    compiled: bool,
    says: str,
) -> None:
    """Even where the compiled graph measures faster (the measurements fixed here), --no-compile keeps the
    module eager; the summary says which and why."""
    from reflow.onnx import pipeline

    monkeypatch.setattr(pipeline, "_measure", lambda model, threads, c: 1e-3 if c else 2e-3)
    src = tmp_path / "wide.onnx"
    onnx.save(wide_model(2, size=8, channels=8), src)
    py = tmp_path / "wide.py"
    args = parse(["parallelize", str(src), "-o", str(py), "--workers", "1", "--no-profile", *flag])
    assert args.func(args) == 0
    assert f"COMPILE = {compiled}" in py.read_text()
    assert re.search(r"^  compiled +" + re.escape(says) + "$", capsys.readouterr().out, re.M)
