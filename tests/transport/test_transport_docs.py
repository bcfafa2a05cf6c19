"""The runnable parts of docs/transport.md and examples/transport/ run and say what the docs say."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def run_guide_block(heading: str) -> str:
    """Run the first python block of docs/transport.md after ``heading`` ("" for the top); its output."""
    text = (ROOT / "docs" / "transport.md").read_text()
    section = text.split(heading, 1)[1] if heading else text
    block = re.findall(r"```python\n(.*?)```", section, re.S)[0]
    return subprocess.run([sys.executable, "-c", block], capture_output=True, text=True, timeout=60,
                          check=True).stdout


@pytest.mark.parametrize(("heading", "printed"), [
    ("", "999999.0 {'id': 7, 'ok': True}"),
    ("## Zero-copy publishing with loans", "[0, 1, 2] 3 0"),
    ("## Forwarding without a copy", "(64, 84, 84) 1 0 False"),
])
def test_guide_blocks_run_and_print_what_the_guide_says(heading: str, printed: str, no_leaks: None) -> None:
    assert printed in run_guide_block(heading)


def test_camera_example(no_leaks: None) -> None:
    out = subprocess.run([sys.executable, str(ROOT / "examples" / "transport" / "camera_pubsub.py")],
                         capture_output=True, text=True, timeout=120, check=True)
    assert "20 detections" in out.stdout and "20 frames through shared memory" in out.stdout


def test_pipeline_in_processes_example(no_leaks: None) -> None:
    out = subprocess.run([sys.executable, str(ROOT / "examples" / "transport" / "pipeline_in_processes.py")],
                         capture_output=True, text=True, timeout=120, check=True)
    assert "identical traces: True" in out.stdout
