"""Worker processes of an env bank, and the parent's handle on each.

Policy. A step must cost the parent almost nothing beyond the envs' own work, so a worker is woken by a POSIX
semaphore (a futex underneath: posting to a running worker is one atomic add, no system call) and answers on
another, one per slice it steps; all arrays stay in the shared segment. A worker may step several slices (an
asynchronous bank's ``slices_per_worker``): each post is one command, found in the command word of the
first of its slices that has one. Both sides first spin briefly on the semaphore, since the next
command usually arrives within microseconds, and only then block (spinning is switched off when there are more
processes than free cores). Everything that is not an array goes over a pipe, pickled: reset options and
call arguments to the worker; the envs' infos, call results and errors back, announced by the slice's
status word. A message small enough for the pipe's buffer is written before the "done" post, so the parent
finds it waiting; a larger one right after (written before, it would block the worker until the parent
read it, and the parent reads only after the post). A command flagged ``ASYNC`` also posts the bank's shared
``ready`` semaphore when done, so that a parent waiting for whichever slice finishes first can sleep on one
semaphore instead of polling every worker's.

Failure. A worker that raises reports the env index and traceback; the parent turns that into an EnvError
(or, for ``call``, re-raises the env's own exception). A worker that dies is noticed by the parent within one
blocking timeout and becomes WorkerCrashed naming the worker and its envs. With a step timeout, a command
that runs past it becomes EnvTimeout naming the env the worker is stuck in (``progress``) and where (its
stack, written by ``faulthandler`` on SIGUSR1). A worker whose parent dies notices and exits, so no process
is left behind. Workers ignore SIGINT: Ctrl-C in a terminal reaches the whole process group, and it is the
parent's to handle (it closes the bank); a worker would only print a traceback. How workers are started is
``launch.py``'s business.
"""

from __future__ import annotations

import contextlib
import faulthandler
import multiprocessing as mp
import os
import pickle
import signal
import time
import traceback
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from multiprocessing.synchronize import Semaphore
from typing import Any

import cloudpickle

from reflow.errors import EnvError, EnvTimeout, WorkerCrashed
from reflow.rl.envs.launch import start_process
from reflow.rl.envs.slice import SliceRunner
from reflow.rl.envs.spec import EnvSpec, Layout, check_same_spaces, make_env
from reflow.transport.shm import SharedSegment

STEP, RESET, CLOSE, CALL, SET_ATTR = 1, 2, 3, 4, 5
ASYNC = 8  # flag on STEP / RESET: post the shared ready semaphore when done
POLL_S = 0.05  # how often a blocked side checks that its peer is still alive
SENT_FIRST_BYTES = 32 * 1024  # messages up to this size are written before the "done" post
OK, FAILED, REPLY = 0, 1, 2  # a slice's status word after a command: what message follows, if any


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


def _run_command(runner: SliceRunner, cmd: int, conn: Connection) -> Any:
    """Run one command on ``runner``; the reply to send back, or None."""
    if cmd == STEP:
        runner.step()
        return runner.events or None
    if cmd == RESET:
        runner.reset(conn.recv())
        return runner.events or None
    if cmd == CALL:
        name, args, kwargs = conn.recv()
        return runner.call(name, args, kwargs)
    name, values = conn.recv()
    runner.set_attr(name, values)
    return None


def _error_reply(runner: SliceRunner, e: Exception) -> tuple[int, str, str, bytes | None]:
    try:
        raised = pickle.dumps(e)
    except Exception:
        raised = None
    return runner.failed_env, f"{type(e).__name__}: {e}", traceback.format_exc(), raised


def worker_main(conn: Connection, seg_name: str, layout: Layout, spec_bytes: bytes, w: int,
                slices: list[tuple[int, int, int]], mode: int, cmd_sem: Semaphore,
                done_sems: list[Semaphore], ready_sem: Semaphore, spin_s: float,
                stack_out: Connection | None) -> None:
    """Body of worker ``w``: build the envs of its ``slices`` (index, lo, hi; contiguous; ``spec_bytes`` is
    their specs and env 0's spaces, cloudpickled: either may come from the caller's script) and serve
    commands until CLOSE. Each post of ``cmd_sem`` is one command,
    for the first of its slices whose command word is set. ``stack_out`` (with a step timeout) receives
    the worker's stack on SIGUSR1."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if stack_out is not None:
        faulthandler.register(signal.SIGUSR1, file=stack_out.fileno(), all_threads=False)
    seg = SharedSegment.attach(seg_name)
    arrays = layout.views(seg.buf)
    command, status = arrays["command"], arrays["status"]
    runners: list[SliceRunner] = []
    parent = mp.parent_process()
    first = slices[0][1]
    envs: list[Any] = []
    try:
        specs: list[EnvSpec]
        specs, ref_spaces = cloudpickle.loads(spec_bytes)
        for k, spec in enumerate(specs):
            env = make_env(spec, first + k)
            envs.append(env)
            check_same_spaces(env, first + k, spec.name, ref_spaces)
        runners = [SliceRunner(envs[lo - first:hi - first], lo, arrays, mode,
                               s if stack_out is not None else None)
                   for s, lo, hi in slices]
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
                    if parent is not None and not parent.is_alive():
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
                reply = _run_command(runners[k], cmd, conn)
                kind = OK if reply is None else REPLY
            except Exception as e:
                reply, kind = _error_reply(runners[k], e), FAILED
            status[s] = kind
            data = b"" if kind == OK else pickle.dumps(reply, protocol=pickle.HIGHEST_PROTOCOL)
            if kind != OK and len(data) <= SENT_FIRST_BYTES:
                conn.send_bytes(data)
                data = b""
            done_sems[k].release()
            if data:
                conn.send_bytes(data)
            if flagged & ASYNC:
                ready_sem.release()
    finally:
        for env in envs:
            env.close()
        del arrays, command, status
        seg.close()


class Worker:
    """The parent's handle on one worker process stepping ``slices`` (contiguous slice indices of ``bounds``):
    envs ``lo..hi-1``. ``timeout_s`` bounds every command (None: wait as long as the worker lives)."""

    def __init__(self, w: int, slices: list[int], bounds: list[int], env_name: str, arrays: dict[str, Any],
                 spin_s: float, ready_sem: Semaphore, timeout_s: float | None = None) -> None:
        self.w, self.slices, self.env_id = w, slices, env_name
        self.lo, self.hi = bounds[slices[0]], bounds[slices[-1] + 1]
        self._bounds = [(s, bounds[s], bounds[s + 1]) for s in slices]
        self.arrays = arrays
        self.spin_s = spin_s
        self.timeout_s = timeout_s
        ctx = mp.get_context("forkserver")
        self.cmd_sem = ctx.Semaphore(0)
        self.done_sems = {s: ctx.Semaphore(0) for s in slices}  # one per slice: its commands end there
        self.ready_sem = ready_sem
        self.conn, self._child_conn = ctx.Pipe()
        self._stack_in: Connection | None = None  # with a timeout: where the worker writes its stack
        self._stack_out: Connection | None = None
        if timeout_s is not None:
            self._stack_in, self._stack_out = ctx.Pipe(duplex=False)
        self.proc: BaseProcess | None = None
        self.reply: Any = None  # what the last command of a slice sent back (infos, call results)
        self._started = {s: 0.0 for s in slices}  # when each slice's command in flight was sent

    def describe(self) -> str:
        return f"worker {self.w} (envs {self.lo}..{self.hi - 1} of {self.env_id!r})"

    def start(self, seg_name: str, layout: Layout, spec_bytes: bytes, mode: int) -> None:
        """Start the process; ``spec_bytes``: cloudpickled (specs of its envs, env 0's spaces)."""
        self.proc = start_process(
            worker_main, f"reflow-envbank-{self.w}",
            (self._child_conn, seg_name, layout, spec_bytes, self.w, self._bounds, mode,
             self.cmd_sem, [self.done_sems[s] for s in self.slices], self.ready_sem, self.spin_s,
             self._stack_out))
        self._child_conn.close()
        if self._stack_out is not None:
            self._stack_out.close()

    def _crashed(self) -> WorkerCrashed:
        code = self.proc.exitcode if self.proc is not None else None
        return WorkerCrashed(f"{self.describe()} died (exit code {code}); the bank is closed, make a new one")

    def _recv(self, timeout_s: float) -> Any:
        deadline = time.monotonic() + timeout_s
        while not self.conn.poll(POLL_S):
            if self.proc is None or not self.proc.is_alive():
                if self.conn.poll(0):
                    break
                raise self._crashed()
            if time.monotonic() > deadline:
                raise WorkerCrashed(f"{self.describe()} did not answer within {timeout_s:.0f} s")
        try:
            return self.conn.recv()
        except (EOFError, OSError):
            if self.proc is not None:
                self.proc.join(1.0)
            raise self._crashed() from None

    def wait_ready(self, timeout_s: float) -> None:
        kind, text = self._recv(timeout_s)
        if kind != "ready":
            raise EnvError(f"{self.describe()} could not start: {text}")

    def send(self, cmd: int, payload: Any = None, s: int | None = None) -> None:
        """Start ``cmd`` on slice ``s`` (default: the worker's first); ``payload`` goes with RESET, CALL and
        SET_ATTR. A worker that is gone raises WorkerCrashed."""
        s = self.slices[0] if s is None else s
        self.arrays["command"][s] = cmd
        self._started[s] = time.monotonic()
        try:
            if cmd & ~ASYNC in (RESET, CALL, SET_ATTR):
                self.conn.send(payload)
            self.cmd_sem.release()
        except OSError:  # BrokenPipeError and the like: the worker died before it could read
            if self.proc is not None:
                self.proc.join(1.0)
            raise self._crashed() from None

    def wait_done(self) -> None:
        """Wait for the command on the worker's (only) slice: lock-step banks give a worker one slice."""
        s = self.slices[0]
        done = self.done_sems[s]
        if not spin_acquire(done, self.spin_s):
            while not done.acquire(timeout=POLL_S):
                self.check_alive(s)
        self._collect(s)

    def poll_done(self, s: int) -> bool:
        """Whether slice ``s``'s last command finished (taking the notice if so); raises as ``wait_done``."""
        if not self.done_sems[s].acquire(False):
            return False
        self._collect(s)
        return True

    def check_alive(self, s: int | None = None) -> None:
        """Raise WorkerCrashed if the worker died, EnvTimeout if slice ``s``'s command is past the timeout."""
        if self.proc is None or not self.proc.is_alive():
            raise self._crashed()
        timeout = self.timeout_s
        if s is not None and timeout is not None and time.monotonic() - self._started[s] > timeout:
            raise self._timed_out(s)

    def _timed_out(self, s: int) -> EnvTimeout:
        env = int(self.arrays["progress"][s])
        stack = ""
        if self.proc is not None and self.proc.pid is not None and self._stack_in is not None:
            with contextlib.suppress(OSError):
                os.kill(self.proc.pid, signal.SIGUSR1)
                if self._stack_in.poll(1.0):
                    time.sleep(0.05)  # let faulthandler finish writing
                    chunks = []
                    while self._stack_in.poll(0):
                        chunks.append(os.read(self._stack_in.fileno(), 65536))
                    stack = b"".join(chunks).decode(errors="replace")
            with contextlib.suppress(OSError):
                self.proc.kill()  # hung: it would not read the CLOSE that ``stop`` sends
        where = f"\nwhere it was:\n{stack}" if stack else ""
        return EnvTimeout(f"env {env} ({self.env_id!r}, stepped by worker {self.w}) did not finish its call "
                          f"within step_timeout={self.timeout_s:g} s; the worker was stopped and the bank is "
                          f"closed{where}")

    def _collect(self, s: int) -> None:
        """Take what slice ``s``'s finished command sent back: its reply, or the error it raised."""
        kind = self.arrays["status"][s]
        self.reply = None
        if kind == OK:
            return
        self.arrays["status"][s] = OK
        message = self._recv(5.0)
        if kind == REPLY:
            self.reply = message
            return
        env, error, trace, raised = message
        failure = EnvError(f"env {env} ({self.env_id!r}, stepped by worker {self.w}) raised {error}\n"
                           f"worker traceback:\n{trace}")
        if raised is not None:
            with contextlib.suppress(Exception):  # the env's own exception, for ``call`` to re-raise
                failure.__cause__ = pickle.loads(raised)
        raise failure

    def stop(self) -> None:
        """Ask the worker to exit, then kill it if it does not; always joins."""
        proc = self.proc
        if proc is not None:
            if proc.is_alive():
                with contextlib.suppress(OSError, ValueError, WorkerCrashed):
                    self.send(CLOSE)
                proc.join(2.0)
            if proc.is_alive():
                proc.kill()
                proc.join(2.0)
            proc.close()
            self.proc = None
        for c in (self.conn, self._child_conn, self._stack_in, self._stack_out):
            if c is not None and not c.closed:
                c.close()
