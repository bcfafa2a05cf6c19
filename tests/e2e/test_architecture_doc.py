"""Every ```python block of docs/architecture.md runs, in order, in one namespace, in a scratch directory."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "architecture.md"


def test_architecture_walkthrough_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    assert len(blocks) == 4
    namespace: dict[str, object] = {"__name__": "architecture_walkthrough"}
    for i, block in enumerate(blocks):
        exec(compile(block, f"{DOC.name}[block {i}]", "exec"), namespace)
    assert (tmp_path / "architecture.svg").read_text().startswith("<svg")
    placement = namespace["place"](namespace["reactions"], workers=2)  # type: ignore[operator]
    assert {placement[f"main.s{i}"] for i in range(4)} == {0, 1}
