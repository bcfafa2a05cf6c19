"""Every ```python block of docs/distributed.md runs, in order, in one namespace (a two-node LocalCluster
started and stopped by the blocks themselves), and the cost-model table in the text is the one its block
computes."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "distributed.md"


@pytest.mark.timeout(600)
def test_distributed_guide_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import ray

    assert not ray.is_initialized()  # the guide's connect() must reach the cluster it starts, not another
    monkeypatch.chdir(tmp_path)
    text = DOC.read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert len(blocks) == 4
    namespace: dict[str, object] = {"__name__": "distributed_guide"}
    try:
        for i, block in enumerate(blocks):
            exec(compile(block, f"{DOC.name}[block {i}]", "exec"), namespace)
    finally:
        for name, stop in (("connection", "close"), ("cluster", "shutdown")):
            if name in namespace:
                getattr(namespace[name], stop)()  # idempotent: the guide's last block did it already
    assert not ray.is_initialized()
    assert len(namespace["here"].report.means) == 6  # type: ignore[attr-defined]
    assert str(namespace["table"]) in text
