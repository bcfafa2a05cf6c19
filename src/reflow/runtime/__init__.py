"""Executors: the deterministic scheduler, the executor contract and the thread executor.

The process executor and placement (``process_executor.py``, ``placement.py``) build on ``executor.py``.
"""

from reflow.runtime.executor import Executor, Invocation, ReactionHost, Result, Scheduled, ThreadExecutor
from reflow.runtime.program import Program, reaction_graph
from reflow.runtime.scheduler import RunResult, RunStats, Scheduler, TraceEntry
from reflow.runtime.tag import Tag

__all__ = ["Executor", "Invocation", "Program", "ReactionHost", "Result", "RunResult", "RunStats",
           "Scheduled", "Scheduler", "Tag", "ThreadExecutor", "TraceEntry", "reaction_graph"]
