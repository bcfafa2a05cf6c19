"""Lingua Franca conformance: LF's own test programs, translated (tests/reactor/lf_*.py), each run with 1 and
4 worker threads and in two worker processes (a pool shared by every program). A program passes when its own
checks hold (they raise inside reactions, as LF's tests exit(1)); a program whose tags do not depend on
physical time must also give the same trace with 4 threads and in processes as with 1 thread."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import lf_basic  # noqa: F401  (each module registers its programs)
import lf_features  # noqa: F401
import lf_modal  # noqa: F401
import lf_more  # noqa: F401
import pytest
from lf_lib import PROGRAMS, LFProgram

from reflow.reactor import run
from reflow.runtime.process_executor import ProcessExecutor, WorkerPool


def run_program(program: LFProgram, **kwargs: Any) -> Any:
    return run(program.make(), timeout=program.timeout, fast=program.fast, keepalive=program.keepalive,
               trace=True, **kwargs)


@pytest.mark.parametrize("program", PROGRAMS, ids=[p.name for p in PROGRAMS])
def test_lf_program_with_1_and_4_threads(program: LFProgram) -> None:
    one = run_program(program, workers=1)
    four = run_program(program, workers=4)
    if not program.physical:
        assert four.trace == one.trace and four.final_tag == one.final_tag
    if program.check_trace is not None:
        program.check_trace(one.trace)
        program.check_trace(four.trace)


@pytest.fixture(scope="module")
def pool() -> Iterator[WorkerPool]:
    """Two worker processes shared by every program of the subset: each run loads its reactors into them."""
    with WorkerPool(2) as workers:
        yield workers


@pytest.mark.parametrize("program", PROGRAMS, ids=[p.name for p in PROGRAMS])
def test_lf_program_in_worker_processes(program: LFProgram, pool: WorkerPool) -> None:
    """Every program in two worker processes (shared by all, so that each run only loads its reactors):
    the same trace as with threads, for those that do not depend on physical time."""
    threads = run_program(program, workers=1)
    processes = run_program(program, executor=ProcessExecutor(pool=pool, local=program.local))
    if not program.physical:
        assert processes.trace == threads.trace
    if program.check_trace is not None:
        program.check_trace(processes.trace)
