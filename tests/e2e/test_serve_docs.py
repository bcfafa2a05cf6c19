"""Every ```python block of docs/serve.md runs, in order, in one namespace, and prints what the text says."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "serve.md"


def test_serve_guide_examples_run(no_leaks: None) -> None:
    text = DOC.read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert len(blocks) >= 5
    namespace: dict[str, object] = {"__name__": "serve_guide"}
    out = io.StringIO()
    for i, block in enumerate(blocks):
        with contextlib.redirect_stdout(out):
            exec(compile(block, f"{DOC.name}[block {i}]", "exec", dont_inherit=True), namespace)
    printed = out.getvalue()
    for claim in re.findall(r"^prints `(.*?)`", text, flags=re.M):
        assert claim in printed, claim
    assert "annotate the parameter as int | None" in printed
    assert "[lookup_prices -> lambda -> groupby_item] on workers [0, 1]" in printed
