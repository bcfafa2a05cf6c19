"""The Python examples of docs/components.md and docs/wield.md run as written, each doc in one namespace."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[2] / "docs"


@pytest.mark.parametrize("doc", ["components.md", "wield.md"])
def test_doc_examples_run(doc: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    blocks = re.findall(r"```python\n(.*?)```", (DOCS / doc).read_text(), flags=re.S)
    assert blocks
    namespace: dict[str, object] = {"__name__": doc}
    for i, block in enumerate(blocks):
        exec(compile(block, f"{doc}[block {i}]", "exec"), namespace)


def test_doc_commands_parse() -> None:
    """Every `reflow ...` line in the docs' bash blocks uses options that exist."""
    from reflow.cli import build_parser

    parser = build_parser()
    for doc in ("components.md", "wield.md"):
        for block in re.findall(r"```bash\n(.*?)```", (DOCS / doc).read_text(), flags=re.S):
            for line in block.splitlines():
                if line.startswith("reflow "):
                    args = line.split("#")[0].split()[1:]
                    parser.parse_args(args)
