"""A serving worker process: runs the stages it hosts on the batches the server sends it.

The protocol over the worker's channel (side ``"b"`` here), one batch at a time:

    server -> worker   ("run", batch, stage, [(item, {port: Table}, deadline)], pads)   run a batch
                       ("fetched", {key: value})                                       a fetch's answer
                       "stop"
    worker -> server   ("ready", pid)                                                  stages loaded
                       ("done", batch, [(item, Table | Failure)], timings, caches)     a batch's answers
                       ("fetch", store, [keys])                                        a lookup missed

Cancelling. The server cancels the batch a worker runs (all its requests gave up: a deadline passed, the
client left, a competing replica won) by writing the batch number into a shared ``cancel`` slot and sending
SIGUSR1. The handler raises ``Cancelled`` in the operator only if that batch is the one running, so a late
signal never hits the next batch. The operator stops at its next Python bytecode (a sleep is interrupted at
once); one stuck in native code is killed by the server after a grace period and the worker restarted.
"""

from __future__ import annotations

import os
import signal
import time
import traceback
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from types import FrameType
from typing import Any

from reflow.errors import ChannelClosed, LookupKeyError, OperatorFailed
from reflow.graph import Node
from reflow.serve.functions import Instance
from reflow.serve.interpret import Program, compile_stage, run_stage
from reflow.serve.store import remote_stores, set_fetcher
from reflow.transport import Channel

STOP = "stop"
CANCEL_SIGNAL = signal.SIGUSR1
WORKER_SPIN = 50e-6  # seconds a worker polls for its next batch before sleeping: short, the server needs the
#                      cores (a busy server's next batch often comes within it; an idle worker costs nothing)


class Cancelled(BaseException):
    """Raised inside an operator whose batch the server cancelled (a BaseException, so that an operator's
    ``except Exception`` lets it through)."""


@dataclass(frozen=True)
class Failure:
    """Why one request failed in a worker (exceptions do not always pickle; this always does)."""

    kind: str  # "operator", "lookup", "cancelled", "deadline" or "internal"
    operator: str
    message: str
    trace: str = ""


def failure_of(e: BaseException) -> Failure:
    if isinstance(e, OperatorFailed):
        cause = e.__cause__ or e
        return Failure("operator", e.operator, str(e),
                       "".join(traceback.format_exception(type(cause), cause, cause.__traceback__)))
    if isinstance(e, LookupKeyError):
        return Failure("lookup", "", str(e))
    return Failure("internal", "", f"{type(e).__name__}: {e}",
                   "".join(traceback.format_exception(type(e), e, e.__traceback__)))


class _Running:
    batch = -1
    cancel: Any = None


def _on_cancel(signum: int, frame: FrameType | None) -> None:
    if _Running.batch >= 0 and _Running.cancel is not None and _Running.cancel.value == _Running.batch:
        _Running.batch = -1
        raise Cancelled()


def warm(programs: dict[str, Program]) -> None:
    """Build every class-based operator now (load its model), so the first request does not pay for it."""
    for program in programs.values():
        for step in program.steps:
            call = getattr(step.node.attrs.get("spec"), "call", None)
            if call is not None and isinstance(call.fn, Instance):
                call.fn.build()


def _fetcher(ch: Channel) -> Any:
    def fetch(store: str, keys: Sequence[Hashable]) -> dict[Hashable, Any]:
        ch.send(("fetch", store, list(keys)))
        while True:
            msg = ch.recv()
            if isinstance(msg, tuple) and msg[0] == "fetched":
                got: dict[Hashable, Any] = msg[1]
                return got
            if msg == STOP:
                raise ChannelClosed("the server stopped this worker during a fetch")
    return fetch


def run_batch(stages: dict[str, Node], programs: dict[str, Program], msg: tuple[Any, ...]) \
        -> tuple[Any, ...]:
    """Run one ``("run", ...)`` message; returns the ``("done", ...)`` answer."""
    _, batch, stage, items, pads = msg
    now = time.monotonic()
    live = [(i, ins) for i, ins, deadline in items if deadline is None or deadline > now]
    results: list[tuple[int, Any]] = [(i, Failure("deadline", stage, "the deadline passed before it ran"))
                                      for i, _, deadline in items if not (deadline is None or deadline > now)]
    timings: list[tuple[str, float, int]] = []
    if live:
        try:
            _Running.batch = batch
            out = run_stage(stages[stage], [ins for _, ins in live], pads, programs[stage])
            _Running.batch = -1
            timings = out.timings
            results += [(i, failure_of(r) if isinstance(r, BaseException) else r)
                        for (i, _), r in zip(live, out.outputs, strict=True)]
        except Cancelled:
            results += [(i, Failure("cancelled", stage, "cancelled")) for i, _ in live]
        finally:
            _Running.batch = -1
    caches = {s.name: s.cache_changes() for s in remote_stores()}
    return ("done", batch, results, timings, {k: v for k, v in caches.items() if v[0] or v[1]})


def worker_main(channel: str, payload: bytes, cancel: Any) -> None:
    """The worker process: load the stages, say ready, run batches until told to stop."""
    import cloudpickle

    _Running.cancel = cancel
    signal.signal(CANCEL_SIGNAL, _on_cancel)
    stages: dict[str, Node] = cloudpickle.loads(payload)
    programs = {name: compile_stage(node) for name, node in stages.items()}
    warm(programs)
    with Channel(channel, "b", spin=WORKER_SPIN) as ch:
        set_fetcher(_fetcher(ch))
        ch.send(("ready", os.getpid()))
        while True:
            try:
                msg = ch.recv()
            except ChannelClosed:
                return
            if msg == STOP:
                return
            if isinstance(msg, tuple) and msg[0] == "run":
                ch.send(run_batch(stages, programs, msg))
            # anything else is a fetch answer that came after its batch was cancelled: dropped
