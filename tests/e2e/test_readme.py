"""The README's Python examples run as written, each in a fresh namespace, from a scratch directory."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_example_runs(index: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                             no_leaks: None) -> None:
    monkeypatch.chdir(tmp_path)
    exec(compile(BLOCKS[index], f"README.md[python block {index}]", "exec"), {"__name__": "readme"})


def test_readme_has_the_two_commands_first() -> None:
    text = README.read_text()
    assert text.index("make demo") < text.index("## A short tour")
    assert text.index("make test") < text.index("## A short tour")


def command_lines(text: str) -> list[str]:
    """Every ``reflow ...`` command shown in ```bash blocks, without its trailing comment."""
    blocks = re.findall(r"```bash\n(.*?)```", text, flags=re.S)
    return [line.split("#")[0].strip() for b in blocks for line in b.splitlines()
            if line.startswith("reflow ")]


def test_readme_and_help_commands_parse() -> None:
    """The commands the README and ``reflow --help`` show use options that exist."""
    from reflow import cli

    lines = command_lines(README.read_text())
    lines += [line.strip().split("  ")[0] for line in cli.EPILOG.splitlines()
              if line.strip().startswith("reflow ") and "<command>" not in line]
    assert len(lines) >= 8
    parser = cli.build_parser()
    for line in lines:
        parser.parse_args(shlex.split(line)[1:])  # exits (SystemExit) on an unknown option
