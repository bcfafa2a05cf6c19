"""Executors by name: ``run(main, executor="ray")`` and the CLI pick one without importing the others.

``"threads"`` is the default in-process executor, ``"processes"`` spreads reactors over worker processes on
this machine, ``"ray"`` over the nodes of a Ray cluster. Keyword options go to the executor's constructor.
"""

from __future__ import annotations

from typing import Any

from reflow.runtime.executor import Executor, ThreadExecutor

EXECUTORS = ("threads", "processes", "ray")


def make_executor(kind: str, workers: int = 1, **options: Any) -> Executor:
    """A fresh executor of kind ``kind`` (one of ``EXECUTORS``); ``workers``: threads or processes."""
    if kind == "threads":
        return ThreadExecutor(workers, **options)
    if kind == "processes":
        from reflow.runtime.process_executor import ProcessExecutor

        return ProcessExecutor(max(workers, 1), **options)
    if kind == "ray":
        from reflow.runtime.ray_executor import RayExecutor

        return RayExecutor(**options)
    raise ValueError(f"unknown executor {kind!r}; choose one of {', '.join(EXECUTORS)}")
