"""Run the reactor pipeline example with its workers in processes, and check it gives the same trace.

The program (examples/reactors/pipeline.py: a source, a bank of numpy-heavy workers, a sink) runs three
times: on one thread, with every reactor placed on 2 worker processes, and mixed (source and sink kept in
this process, workers in processes). Matrices move between processes through shared memory. The three
traces are identical: placement changes where reactions run, never what they compute.

    .venv/bin/python examples/transport/pipeline_in_processes.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "reactors"))

from pipeline import Pipeline

from reflow.reactor import run
from reflow.runtime import ThreadExecutor
from reflow.runtime.process_executor import ProcessExecutor

FRAMES = 8


def exact(value: Any) -> Any:
    """Arrays compared by their bytes, everything else by value."""
    return value.tobytes() if isinstance(value, np.ndarray) else value


def main() -> None:
    traces = {}
    for label, executor in [
        ("1 thread", ThreadExecutor(1)),
        ("2 processes", ProcessExecutor(2)),
        ("mixed", ProcessExecutor(2, local=["main.source", "main.sink"])),
    ]:
        t0 = time.perf_counter()
        result = run(Pipeline(frames=FRAMES), executor=executor, trace=True)
        traces[label] = [(e.tag, e.reaction, [(k, exact(v)) for k, v in e.writes]) for e in result.trace]
        print(f"{label:>12}: {len(result.trace)} reactions in {time.perf_counter() - t0:.2f} s")
    same = all(t == traces["1 thread"] for t in traces.values())
    print("identical traces:", same)
    if not same:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
