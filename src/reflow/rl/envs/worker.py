"""Worker processes of an env bank, and the parent's handle on each.

Policy. A step must cost the parent almost nothing beyond the envs' own work, so a worker is woken by a POSIX
semaphore (a futex underneath: posting to a running worker is one atomic add, no system call) and answers on
another, one per slice it steps; all data stays in the shared segment. A worker may step several slices (an
asynchronous bank's ``slices_per_worker``): each post is one command, found in the command word of the
first of its slices that has one. Both sides first spin briefly on the semaphore, since the next
command usually arrives within microseconds, and only then block (spinning is switched off when there are more
processes than cores). Rare messages (reset options, errors, the startup handshake) are pickled over a pipe.
A command flagged ``ASYNC`` also posts the bank's shared ``ready`` semaphore when done, so that a parent
waiting for whichever slice finishes first can sleep on one semaphore instead of polling every worker's.

Failure. A worker that raises reports the env index and traceback over the pipe and marks the slice's status
word; the parent turns that into an EnvError. A worker that dies is noticed by the parent within one blocking
timeout and becomes WorkerCrashed naming the worker and its envs. A worker whose parent dies notices the same
way and exits, so no process is left behind. Workers start with ``spawn`` (never fork: torch and threads).
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


def worker_main(conn: Connection, seg_name: str, layout: Layout, specs: list[EnvSpec], w: int,
                slices: list[tuple[int, int, int]], mode: int, discrete: bool,
                ref_spaces: tuple[spaces.Space[Any], spaces.Space[Any]], cmd_sem: Semaphore,
                done_sems: list[Semaphore], ready_sem: Semaphore, spin_s: float) -> None:
    """Body of worker ``w``: build the envs of its ``slices`` (index, lo, hi; contiguous, ``specs`` in order)
    and serve commands until CLOSE. Each post of ``cmd_sem`` is one command, for the first of its slices
    whose command word is set."""
    seg = SharedSegment.attach(seg_name)
    # Spawned children share the parent's resource tracker, and ``attach`` just unregistered the segment
    # there; register it again so the owner's unlink does not make the tracker report a missing name.
    resource_tracker.register(f"/{seg_name}", "shared_memory")
    arrays = layout.views(seg.buf)
    command, status = arrays["command"], arrays["status"]
    runners: list[SliceRunner] = []
    parent = os.getppid()
    first = slices[0][1]
    envs: list[Any] = []
    try:
        for k, spec in enumerate(specs):
            env = make_env(spec, first + k)
            envs.append(env)
            check_same_spaces(env, first + k, spec.env_id, ref_spaces)
        runners = [SliceRunner(envs[lo - first:hi - first], lo, arrays, mode, discrete)
                   for _, lo, hi in slices]
        conn.send(("ready", None))
    except Exception as e:
        conn.send(("error", f"{type(e).__name__}: {e}"))
        for env in envs:
            env.close()
        del arrays, command, status
        seg.close()
        return
    try:
        while True:
            if not spin_acquire(cmd_sem, spin_s):
                while not cmd_sem.acquire(timeout=POLL_S):
                    if os.getppid() != parent:
                        return
            found = next(((k, s) for k, (s, _, _) in enumerate(slices) if command[s]), None)
            if found is None:
                continue  # no command set (cannot happen: the parent sets one before each post)
            k, s = found
            flagged = int(command[s])
            command[s] = 0
            cmd = flagged & ~ASYNC
            if cmd == CLOSE:
                return
            try:
                if cmd == STEP:
                    runners[k].step()
                else:
                    runners[k].reset(conn.recv())
            except Exception as e:
                status[s] = 1
                error = f"{type(e).__name__}: {e}"
                conn.send(("error", (runners[k].failed_env, error, traceback.format_exc())))
            done_sems[k].release()
            if flagged & ASYNC:
                ready_sem.release()
    finally:
        for env in envs:
            env.close()
        del arrays, command, status
        seg.close()


class Worker:
    """The parent's handle on one worker process stepping ``slices`` (contiguous slice indices of ``bounds``):
    envs ``lo..hi-1``."""

    def __init__(self, w: int, slices: list[int], bounds: list[int], env_id: str, arrays: dict[str, Any],
                 spin_s: float, ready_sem: Semaphore) -> None:
        self.w, self.slices, self.env_id = w, slices, env_id
        self.lo, self.hi = bounds[slices[0]], bounds[slices[-1] + 1]
        self._bounds = [(s, bounds[s], bounds[s + 1]) for s in slices]
        self.arrays = arrays
        self.spin_s = spin_s
        ctx = mp.get_context("spawn")
        self.cmd_sem = ctx.Semaphore(0)
        self.done_sems = {s: ctx.Semaphore(0) for s in slices}  # one per slice: its commands end there
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
            args=(self._child_conn, seg_name, layout, specs[self.lo:self.hi], self.w, self._bounds, mode,
                  discrete, ref_spaces, self.cmd_sem, [self.done_sems[s] for s in self.slices],
                  self.ready_sem, self.spin_s))
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

    def send(self, cmd: int, payload: Any = None, s: int | None = None) -> None:
        """Start ``cmd`` on slice ``s`` (default: the worker's first)."""
        s = self.slices[0] if s is None else s
        self.arrays["command"][s] = cmd
        if cmd & ~ASYNC == RESET:
            self.conn.send(payload)
        self.cmd_sem.release()

    def wait_done(self) -> None:
        """Wait for the command on the worker's (only) slice: lock-step banks give a worker one slice."""
        s = self.slices[0]
        done = self.done_sems[s]
        if not spin_acquire(done, self.spin_s):
            while not done.acquire(timeout=POLL_S):
                self.check_alive()
        self._raise_if_failed(s)

    def poll_done(self, s: int) -> bool:
        """Whether slice ``s``'s last command finished (taking the notice if so); raises as ``wait_done``."""
        if not self.done_sems[s].acquire(False):
            return False
        self._raise_if_failed(s)
        return True

    def check_alive(self) -> None:
        if self.proc is None or not self.proc.is_alive():
            raise self._crashed()

    def _raise_if_failed(self, s: int) -> None:
        if self.arrays["status"][s]:
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
