"""Running a reactor program: ``run(main, workers=N, timeout=..., fast=True)``.

``run`` assembles the tree (phase *assembly*), builds the reaction graph (a causality cycle is an error
here, before anything runs), and hands both to the deterministic scheduler with an executor: by default a
``ThreadExecutor`` with ``workers`` threads; pass ``executor=`` for another, as an object or by name
(``"processes"``, ``"ray"``: ``reflow.runtime.executors``). The
run owns the executor and closes it on every exit path. ``reaction_graph_of`` gives the reaction graph
without running, for drawing or placement.
"""

from __future__ import annotations

from collections.abc import Callable

from reflow.graph import Graph
from reflow.reactor.assemble import assemble, set_phase, walk
from reflow.reactor.reactor import Phase, Reactor
from reflow.runtime.executor import Executor, ThreadExecutor
from reflow.runtime.executors import make_executor
from reflow.runtime.program import reaction_graph
from reflow.runtime.scheduler import RunResult, Scheduler
from reflow.runtime.tag import Tag


def run(main: Reactor, *, workers: int = 1, timeout: int | None = None, fast: bool = True,
        keepalive: bool | None = None, executor: Executor | str | None = None, trace: bool = False,
        on_tag: Callable[[Tag], None] | None = None) -> RunResult:
    """Run ``main`` to completion and return the final tag, counters, measured costs and (if ``trace``) the
    trace of every reaction run with the values it wrote.

    ``timeout`` is in logical ns (``sec(2)``); ``fast=False`` waits for physical time to catch up with
    logical time before each tag. ``keepalive`` keeps the program running when no event is left, until the
    timeout or a stop request (LF's ``keepalive``; by default, a program is kept alive if it has physical
    actions).
    Raises ``ReactionFailed`` (after shutdown reactions ran) if a reaction raised, and ``ReactorError``
    subclasses for a malformed program. ``on_tag`` is called after each tag (the CLI drives a progress bar
    with it).
    """
    if timeout is not None and timeout < 0:
        raise ValueError(f"timeout must be >= 0 ns, got {timeout}")
    program = assemble(main)
    if isinstance(executor, str):  # by name: "threads", "processes" (``workers`` of them) or "ray"
        executor = make_executor(executor, workers)
    chosen = executor if executor is not None else ThreadExecutor(workers)
    try:
        scheduler = Scheduler(program, chosen, fast=fast, timeout=timeout, trace=trace, keepalive=keepalive,
                              on_tag=on_tag,
                              on_phase=lambda phase: set_phase(main, Phase(phase)))
    except BaseException:  # e.g. a causality cycle: the run never starts, but the executor is released
        chosen.close()
        set_phase(main, Phase.DONE)
        raise
    for r in walk(main):
        r._runtime = scheduler
    try:
        return scheduler.run()
    finally:
        for r in walk(main):
            r._runtime = None
        set_phase(main, Phase.DONE)


def reaction_graph_of(main: Reactor) -> Graph:
    """The reaction graph of ``main`` (assembles it; the reactor can no longer be run afterwards)."""
    return reaction_graph(assemble(main))
