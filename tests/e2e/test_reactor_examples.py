"""The example programs run and do what their docstrings say."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

from reflow.reactor import msec, run

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "reactors"


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"reactor_example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_sensor_gets_every_reading_in_order(capsys: pytest.CaptureFixture[str]) -> None:
    mod = load("sensor")
    main = mod.main()
    run(main)
    assert main.smoother.seen == mod.READINGS
    lines = [ln for ln in capsys.readouterr().out.splitlines() if "reading" in ln]
    assert len(lines) == mod.READINGS


def test_banks_example(capsys: pytest.CaptureFixture[str]) -> None:
    mod = load("banks")
    main = mod.main()
    result = run(main, workers=2)
    out = capsys.readouterr().out
    assert "tag (5 ms, 0): squares [100, 121, 144, 169]" in out
    assert "tag (65 ms, 0): squares [1600, 1681, 1764, 1849]" in out
    assert [s.echoes for s in main.squarers] == [4, 4, 4, 4]
    assert main.gather.late == 0 and result.final_tag.time == msec(65)
