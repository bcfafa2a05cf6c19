"""Lingua Franca's own test programs (translated in tests/reactor/lf_*.py) on Ray: reactors dealt over the
three nodes, the same trace as with one thread, and the programs' own checks hold.

A selection, not all 117 (each run starts its reactor groups as new Ray actors, seconds each): a cycle
through logical actions, banks and multiports with delays, banks of modal reactors. The translated files
import a helper module beside them (lf_lib), which Ray must ship by value too: the test failed before
``pickle_hosts`` followed a program's imports."""

from __future__ import annotations

import lf_basic  # noqa: F401  (each module registers its programs)
import lf_features  # noqa: F401
import lf_modal  # noqa: F401
import lf_more  # noqa: F401
import pytest
from lf_lib import PROGRAMS, LFProgram
from ray_programs import scatter

from reflow.reactor import run
from reflow.runtime.ray_cluster import NodeInfo
from reflow.runtime.ray_executor import RayExecutor

CHOSEN = ("Python/src/PingPong", "Python/src/multiport/BankToBankMultiportAfter",
          "Python/src/modal_models/BanksCount3ModesComplex")
BY_NAME = {p.name: p for p in PROGRAMS}


@pytest.mark.parametrize("name", CHOSEN)
def test_lf_program_scattered_over_three_nodes(name: str, ray_nodes: list[NodeInfo]) -> None:
    program: LFProgram = BY_NAME[name]
    assert not program.physical and not program.local

    options = {"timeout": program.timeout, "fast": program.fast, "keepalive": program.keepalive,
               "trace": True}
    threads = run(program.make(), workers=1, **options)
    main = program.make()
    ex = RayExecutor(pin=scatter(main, len(ray_nodes)))
    on_ray = run(main, executor=ex, **options)
    assert len({s.node for s in ex.placement.values() if s.group >= 0}) >= 2
    assert on_ray.trace == threads.trace and on_ray.final_tag == threads.final_tag
    if program.check_trace is not None:
        program.check_trace(on_ray.trace)
