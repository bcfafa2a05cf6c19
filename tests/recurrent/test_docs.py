"""docs/recurrent.md: every ```python block runs, in order, in one namespace (from the repository's root),
and every ``reflow ...`` command line it shows parses."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "recurrent.md"


def test_recurrent_guide_examples_run(monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(ROOT)
    monkeypatch.syspath_prepend(str(ROOT / "examples" / "recurrent"))
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    assert len(blocks) >= 6
    namespace: dict[str, object] = {"__name__": "recurrent_guide"}
    for i, block in enumerate(blocks):
        exec(compile(block, f"{DOC.name}[block {i}]", "exec"), namespace)
    out = capsys.readouterr().out
    assert "outside the domain of reward" in out and "has no base case" in out and "bound T of t" in out


def test_recurrent_guide_commands_parse() -> None:
    from reflow import cli

    blocks = re.findall(r"```bash\n(.*?)```", DOC.read_text(), flags=re.S)
    lines = [ln.strip() for b in blocks for ln in b.splitlines() if ln.strip().startswith("reflow ")]
    assert len(lines) >= 4
    parser = cli.build_parser()
    for line in lines:
        parser.parse_args(shlex.split(line)[1:])
