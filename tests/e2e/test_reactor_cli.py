"""`reflow run` and `reflow graph` on the example programs, and the program-file convention."""

from __future__ import annotations

from multiprocessing import resource_tracker
from pathlib import Path

import pytest

from reflow.cli import main as cli
from reflow.errors import ReactorError
from reflow.reactor.commands import load_main, parse_duration

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "reactors"


def test_run_counter_example(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(["run", str(EXAMPLES / "counter.py"), "--workers", "2"]) == 0
    out = capsys.readouterr().out
    assert "shutdown at tag (40 ms, 1) after 5 values: [2, 4, 6, 8, 10]" in out
    assert "reflow run: main stopped at tag (40 ms, 1)" in out


def test_run_with_timeout_and_realtime(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(["run", str(EXAMPLES / "counter.py"), "--timeout", "15ms", "--realtime", "--progress"]) == 0
    captured = capsys.readouterr()
    assert "after 2 values: [2, 4]" in captured.out and "real-time mode, timeout 15 ms" in captured.out
    assert "logical time" in captured.err  # the progress bar


def test_pipeline_checksum_is_the_same_for_any_workers(capsys: pytest.CaptureFixture[str]) -> None:
    lines = []
    for workers in ("1", "3"):
        assert cli(["run", str(EXAMPLES / "pipeline.py"), "-w", workers]) == 0
        lines.append(capsys.readouterr().out.splitlines()[0])
    assert lines[0] == lines[1] and "120 matrices through a bank of 4 worker reactors" in lines[0]


@pytest.fixture
def tracker_running() -> None:
    """Start multiprocessing's resource tracker (a process that lives as long as this one) before
    ``no_leaks`` takes its snapshot of child processes."""
    resource_tracker.ensure_running()


def test_run_in_worker_processes(capfd: pytest.CaptureFixture[str], tracker_running: None,
                                 no_leaks: None) -> None:
    assert cli(["run", str(EXAMPLES / "banks.py"), "--processes", "2"]) == 0
    out = capfd.readouterr().out
    assert "tag (65 ms, 0): squares [1600, 1681, 1764, 1849]" in out  # printed by a worker process
    assert "stopped at tag (65 ms, 1)" in out and "2 process(es)" in out


def test_program_file_without_main(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "nomain.py"
    bad.write_text("x = 1\n")
    assert cli(["run", str(bad)]) == 1
    assert "has no main reactor: define a function `main() -> Reactor`" in capsys.readouterr().err
    worse = tmp_path / "wrong.py"
    worse.write_text("def main():\n    return 42\n")
    with pytest.raises(ReactorError, match="main\\(\\) returned int, not a Reactor"):
        load_main(worse)
    with pytest.raises(ReactorError, match="does not exist"):
        load_main(tmp_path / "missing.py")


def test_a_reactor_instance_named_main_is_accepted(tmp_path: Path) -> None:
    f = tmp_path / "inst.py"
    f.write_text("from reflow.reactor import Reactor\nmain = Reactor('solo')\n")
    assert load_main(f).path == "solo"


def test_parse_duration() -> None:
    assert parse_duration("2s") == 2_000_000_000 and parse_duration("1.5") == 1_500_000_000
    assert parse_duration("500ms") == 500_000_000 and parse_duration("3 us") == 3_000
    import argparse

    with pytest.raises(argparse.ArgumentTypeError):
        parse_duration("soon")


def test_graph_command_writes_svg(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "g.svg"
    assert cli(["graph", str(EXAMPLES / "banks.py"), "--out", str(out)]) == 0
    assert out.read_text().lstrip().startswith(("<svg", "<?xml"))
    assert "main.gather.show" in out.read_text()
    assert "10 reactions" in capsys.readouterr().out
    dot = tmp_path / "g.dot"
    assert cli(["graph", str(EXAMPLES / "pipeline.py"), "--out", str(dot), "--color", "placement",
                "-w", "2"]) == 0
    assert "main.sink.fold" in dot.read_text()


def test_keepalive_waits_for_the_timeout(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    program = tmp_path / "once.py"
    program.write_text("from reflow.reactor import Reactor, reaction\n\n\n"
                       "class Once(Reactor):\n"
                       "    @reaction(triggers='startup')\n"
                       "    def hello(self) -> None:\n"
                       "        print('hello')\n\n\n"
                       "def main() -> Reactor:\n"
                       "    return Once('main')\n")
    assert cli(["run", str(program)]) == 0
    assert "stopped at tag (0 ns, 1)" in capsys.readouterr().out  # nothing left to do
    assert cli(["run", str(program), "--keepalive", "--timeout", "20ms"]) == 0
    assert "stopped at tag (20 ms, 0)" in capsys.readouterr().out
