"""The runnable parts of docs/transport.md and examples/transport/ run and say what the docs say."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_pubsub_block_of_the_guide_runs(no_leaks: None) -> None:
    text = (ROOT / "docs" / "transport.md").read_text()
    block = re.findall(r"```python\n(.*?)```", text, re.S)[0]
    out = subprocess.run([sys.executable, "-c", block], capture_output=True, text=True, timeout=60,
                         check=True)
    assert "999999.0 {'id': 7, 'ok': True}" in out.stdout


def test_loan_block_of_the_guide_runs(no_leaks: None) -> None:
    text = (ROOT / "docs" / "transport.md").read_text()
    section = text.split("## Zero-copy publishing with loans", 1)[1]
    block = re.findall(r"```python\n(.*?)```", section, re.S)[0]
    out = subprocess.run([sys.executable, "-c", block], capture_output=True, text=True, timeout=60,
                         check=True)
    assert "[0, 1, 2] 3 0" in out.stdout


def test_camera_example(no_leaks: None) -> None:
    out = subprocess.run([sys.executable, str(ROOT / "examples" / "transport" / "camera_pubsub.py")],
                         capture_output=True, text=True, timeout=120, check=True)
    assert "20 detections" in out.stdout and "20 frames through shared memory" in out.stdout


def test_pipeline_in_processes_example(no_leaks: None) -> None:
    out = subprocess.run([sys.executable, str(ROOT / "examples" / "transport" / "pipeline_in_processes.py")],
                         capture_output=True, text=True, timeout=120, check=True)
    assert "identical traces: True" in out.stdout
