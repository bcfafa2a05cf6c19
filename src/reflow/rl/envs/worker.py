"""Worker processes of an env bank, and the parent's handle on each.

Policy. A step must cost the parent almost nothing beyond the envs' own work, so a worker is woken by a POSIX
semaphore (a futex underneath: posting to a running worker is one atomic add, no system call) and answers on
another; all data stays in the shared segment. Both sides first spin briefly on the semaphore, since the next
command usually arrives within microseconds, and only then block (spinning is switched off when there are more
processes than cores). Rare messages (reset options, errors, the startup handshake) are pickled over a pipe.
A command flagged ``ASYNC`` also posts the bank's shared ``ready`` semaphore when done, so that a parent
waiting for whichever slice finishes first can sleep on one semaphore instead of polling every worker's.

Failure. A worker that raises reports the env index and traceback over the pipe and marks its status word; the
parent turns that into an EnvError. A worker that dies is noticed by the parent within one blocking timeout
and becomes WorkerCrashed naming the worker and its env slice. A worker whose parent dies notices the same way
and exits, so no process is left behind. Workers start with ``spawn`` (never fork: torch and threads).
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import time
import traceback
from multiprocessing import resource_tracker
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from multiprocessing.synchronize import Semaphore
from typing import Any

from gymnasium import spaces

from reflow.errors import EnvError, WorkerCrashed
from reflow.rl.envs.slice import SliceRunner
from reflow.rl.envs.spec import EnvSpec, Layout, check_same_spaces, make_env
from reflow.transport.shm import SharedSegment

STEP, RESET, CLOSE = 1, 2, 3
ASYNC = 8  # flag on STEP / RESET: post the shared ready semaphore when done
POLL_S = 0.05  # how often a blocked side checks that its peer is still alive


def spin_acquire(sem: Semaphore, spin_s: float) -> bool:
    """Try to take ``sem`` for up to ``spin_s`` seconds without sleeping."""
    if sem.acquire(False):
        return True
    if spin_s <= 0:
        return False
    deadline = time.perf_counter() + spin_s
    while time.perf_counter() < deadline:
        # Yield while spinning: if the peer we wait for was preempted onto this core, it runs now.
        os.sched_yield()
        if sem.acquire(False):
            return True
    return False


def worker_main(conn: Connection, seg_name: str, layout: Layout, specs: list[EnvSpec], lo: int, w: int,
                mode: int, discrete: bool, ref_spaces: tuple[spaces.Space[Any], spaces.Space[Any]],
                cmd_sem: Semaphore, done_sem: Semaphore, ready_sem: Semaphore, spin_s: float) -> None:
    """Body of worker ``w``: build envs ``lo..lo+len(specs)-1`` and serve commands until CLOSE."""
    seg = SharedSegment.attach(seg_name)
    # Spawned children share the parent's resource tracker, and ``attach`` just unregistered the segment
    # there; register it again so the owner's unlink does not make the tracker report a missing name.
    resource_tracker.register(f"/{seg_name}", "shared_memory")
    arrays = layout.views(seg.buf)
    runner: SliceRunner | None = None
    parent = os.getppid()
    try:
        envs = []
        for k, spec in enumerate(specs):
            env = make_env(spec, lo + k)
            envs.append(env)
            check_same_spaces(env, lo + k, spec.env_id, ref_spaces)
        runner = SliceRunner(envs, lo, arrays, mode, discrete)
        conn.send(("ready", None))
    except Exception as e:
        conn.send(("error", f"{type(e).__name__}: {e}"))
        for env in envs:
            env.close()
        del arrays
        seg.close()
        return
    try:
        while True:
            if not spin_acquire(cmd_sem, spin_s):
                while not cmd_sem.acquire(timeout=POLL_S):
                    if os.getppid() != parent:
                        return
            flagged = int(arrays["command"][w])
            cmd = flagged & ~ASYNC
            if cmd == CLOSE:
                return
            try:
                if cmd == STEP:
                    runner.step()
                else:
                    runner.reset(conn.recv())
            except Exception as e:
                arrays["status"][w] = 1
                conn.send(("error", (runner.failed_env, f"{type(e).__name__}: {e}", traceback.format_exc())))
            done_sem.release()
            if flagged & ASYNC:
                ready_sem.release()
    finally:
        runner.close()
        del arrays
        seg.close()


class Worker:
    """The parent's handle on one worker process stepping envs ``lo..hi-1``."""

    def __init__(self, w: int, lo: int, hi: int, env_id: str, arrays: dict[str, Any], spin_s: float,
                 ready_sem: Semaphore) -> None:
        self.w, self.lo, self.hi, self.env_id = w, lo, hi, env_id
        self.arrays = arrays
        self.spin_s = spin_s
        ctx = mp.get_context("spawn")
        self.cmd_sem = ctx.Semaphore(0)
        self.done_sem = ctx.Semaphore(0)
        self.ready_sem = ready_sem
        self.conn, self._child_conn = ctx.Pipe()
        self._ctx = ctx
        self.proc: BaseProcess | None = None

    def describe(self) -> str:
        return f"worker {self.w} (envs {self.lo}..{self.hi - 1} of {self.env_id!r})"

    def start(self, seg_name: str, layout: Layout, specs: list[EnvSpec], mode: int, discrete: bool,
              ref_spaces: tuple[spaces.Space[Any], spaces.Space[Any]]) -> None:
        self.proc = self._ctx.Process(
            target=worker_main, name=f"reflow-envbank-{self.w}", daemon=True,
            args=(self._child_conn, seg_name, layout, specs[self.lo:self.hi], self.lo, self.w, mode, discrete,
                  ref_spaces, self.cmd_sem, self.done_sem, self.ready_sem, self.spin_s))
        self.proc.start()
        self._child_conn.close()

    def _crashed(self) -> WorkerCrashed:
        code = self.proc.exitcode if self.proc is not None else None
        return WorkerCrashed(f"{self.describe()} died (exit code {code}); the bank is closed, make a new one")

    def _recv(self, timeout_s: float) -> tuple[str, Any]:
        deadline = time.monotonic() + timeout_s
        while not self.conn.poll(POLL_S):
            if self.proc is None or not self.proc.is_alive():
                if self.conn.poll(0):
                    break
                raise self._crashed()
            if time.monotonic() > deadline:
                raise WorkerCrashed(f"{self.describe()} did not answer within {timeout_s:.0f} s")
        try:
            msg: tuple[str, Any] = self.conn.recv()
        except (EOFError, OSError):
            if self.proc is not None:
                self.proc.join(1.0)
            raise self._crashed() from None
        return msg

    def wait_ready(self, timeout_s: float) -> None:
        kind, text = self._recv(timeout_s)
        if kind != "ready":
            raise EnvError(f"{self.describe()} could not start: {text}")

    def send(self, cmd: int, payload: Any = None) -> None:
        self.arrays["command"][self.w] = cmd
        if cmd & ~ASYNC == RESET:
            self.conn.send(payload)
        self.cmd_sem.release()

    def wait_done(self) -> None:
        if not spin_acquire(self.done_sem, self.spin_s):
            while not self.done_sem.acquire(timeout=POLL_S):
                self.check_alive()
        self._raise_if_failed()

    def poll_done(self) -> bool:
        """Whether the last command finished (taking the notice if so); raises as ``wait_done`` does."""
        if not self.done_sem.acquire(False):
            return False
        self._raise_if_failed()
        return True

    def check_alive(self) -> None:
        if self.proc is None or not self.proc.is_alive():
            raise self._crashed()

    def _raise_if_failed(self) -> None:
        if self.arrays["status"][self.w]:
            _, (env, error, trace) = self._recv(5.0)
            raise EnvError(f"env {env} ({self.env_id!r}, stepped by worker {self.w}) raised {error}\n"
                           f"worker traceback:\n{trace}")

    def stop(self) -> None:
        """Ask the worker to exit, then kill it if it does not; always joins."""
        proc = self.proc
        if proc is not None:
            if proc.is_alive():
                with contextlib.suppress(OSError, ValueError):
                    self.send(CLOSE)
                proc.join(2.0)
            if proc.is_alive():
                proc.kill()
                proc.join(2.0)
            proc.close()
            self.proc = None
        self.conn.close()
        if not self._child_conn.closed:
            self._child_conn.close()
