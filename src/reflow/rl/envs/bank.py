"""EnvBank: N gymnasium envs replicated over worker processes, stepped in lock-step on shared memory.

The bank splits its envs into ``num_workers`` contiguous slices. Slice 0 is stepped by the calling process
itself (it would otherwise sit idle waiting), slices 1.. by worker processes; with ``num_workers=1`` there
is no process at all. Observations, actions, rewards and done flags live in one shared segment that every
process maps, so ``step`` is: write actions, wake the workers, step slice 0, wait for the workers. Env i is
always seeded with ``seed + i`` and is stepped by exactly one process, so results do not depend on
``num_workers``.

Slices can also run independently (``start`` a command on some slices, collect whichever ``finished``), for
an EnvPool-style asynchronous env (``async_env.py``): no slice then waits for the slowest one. A bank whose
caller steps nothing can also give each worker process several slices (``slices_per_worker``): a worker then
steps one while the caller hands out the results of another, instead of waiting for its next actions.

Observations have ``OBS_BUFFERS`` batch buffers (``obs_buffers``); each step or reset names the one to fill.
A caller can then hand a filled batch out without copying it and fill another one next, as long as the
first is still in use (``BankVectorEnv`` does so).

The bank owns its segment and processes; ``close()`` (or leaving the ``with`` block, or any error) stops the
workers, kills those that do not stop, and unlinks the segment.
"""

from __future__ import annotations

import multiprocessing as mp
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import cloudpickle
import numpy as np
from gymnasium import spaces

from reflow.errors import EnvError, OversubscribedWarning, ReflowError
from reflow.rl.envs.cores import CoreCount, CoreProbe
from reflow.rl.envs.slice import Events, SliceRunner
from reflow.rl.envs.space_tree import SpaceTree
from reflow.rl.envs.spec import (
    EnvSpec,
    action_code,
    bank_layout,
    check_same_spaces,
    make_env,
    obs_leaf_buffers,
    resolve,
    store_actions,
)
from reflow.rl.envs.worker import ASYNC, CALL, POLL_S, RESET, SET_ATTR, STEP, Worker, spin_acquire
from reflow.transport.shm import SharedSegment

DEFAULT_SPIN_S = 0.002
OBS_BUFFERS = 3
START_TIMEOUT_S = 120.0


def slice_bounds(num_envs: int, num_workers: int) -> list[int]:
    """Boundaries of ``num_workers`` contiguous slices as even as possible: slice w is [b[w], b[w+1])."""
    base, extra = divmod(num_envs, num_workers)
    bounds = [0]
    for w in range(num_workers):
        bounds.append(bounds[-1] + base + (1 if w < extra else 0))
    return bounds


@dataclass(frozen=True)
class BankStats:
    """How a bank runs: the processes asked for and used, and the cores it found free when it started."""

    requested_workers: int
    workers: int  # processes stepping envs: the caller (if it steps a slice) and the worker processes
    usable_cores: int
    free_cores: float | None  # None: not measured (one process asked for: nothing to fit)
    oversubscribed: bool  # fewer free cores than the processes asked for (the caller's included)
    spinning: bool

    def describe(self) -> str:
        free = "not measured" if self.free_cores is None else f"{self.free_cores:.1f}"
        text = (f"{self.workers} of {self.requested_workers} requested workers; "
                f"{free} of {self.usable_cores} cores free at start")
        if self.oversubscribed:
            text += " (oversubscribed"
            text += ": stepping in fewer processes)" if self.workers < self.requested_workers else ")"
        return text


class EnvBank:
    """``len(specs)`` envs over ``num_workers`` processes (the caller's included, unless ``caller_steps``
    is False: then ``num_workers`` worker processes step every slice); see the module doc.

    ``fit_workers``: a lock-step bank uses no more processes than there are free cores (``cores.py``), so
    that it never falls below one process stepping every env; results do not depend on the count.
    ``step_timeout`` (seconds): a command that takes longer raises EnvTimeout naming the env; every env then
    runs in a worker process (the caller's own slice could not be stopped)."""

    def __init__(self, specs: Sequence[EnvSpec], num_workers: int = 1, seed: int | None = 0,
                 autoreset_mode: int = 0, spin_s: float | None = None, caller_steps: bool = True,
                 slices_per_worker: int = 1, step_timeout: float | None = None,
                 fit_workers: bool = True) -> None:
        n = len(specs)
        if n < 1:
            raise EnvError("an env bank needs at least one env")
        if not 1 <= num_workers <= n:
            raise EnvError(f"num_workers must be between 1 and num_envs={n}, got {num_workers}")
        if slices_per_worker < 1 or (caller_steps and slices_per_worker != 1):
            raise EnvError("slices_per_worker must be 1, or more when the caller steps no slice; got "
                           f"{slices_per_worker}")
        if num_workers * slices_per_worker > n:
            raise EnvError(f"{num_workers} workers x {slices_per_worker} slices each need at least "
                           f"{num_workers * slices_per_worker} envs, got {n}")
        if step_timeout is not None and not step_timeout > 0:
            raise EnvError(f"step_timeout must be a positive number of seconds or None, got {step_timeout}")
        probe = CoreProbe() if num_workers > 1 or not caller_steps else None
        self.specs = resolve(specs)
        caller_steps = caller_steps and step_timeout is None
        self.num_envs, self.seed, self.step_timeout = n, seed, step_timeout
        self._first = 1 if caller_steps else 0  # the first slice a worker process steps
        self.workers: list[Worker] = []
        self._owner: dict[int, Worker] = {}  # slice -> the worker process stepping it
        self._segment: SharedSegment | None = None
        self._local: SliceRunner | None = None
        self.arrays: dict[str, np.ndarray[Any, Any]] = {}
        self.obs_buffers: list[Any] = []  # per batch buffer: an array, or a dict / tuple of leaf arrays
        self.obs_leaves: list[list[np.ndarray[Any, Any]]] = []  # per batch buffer: its leaf arrays
        self.events: Events = []  # the infos of the last lock-step step or reset (see ``slice.py``)
        self.last_buffer = 0  # the buffer the last step or reset filled
        self._ready = mp.get_context("forkserver").Semaphore(0)  # posted by a worker ending an ASYNC command
        self._ready_debt = 0  # finished commands seen whose ready post is not taken yet (see ``finished``)
        self._running: set[int] = set()  # slices with an asynchronous command in flight
        self._local_done = False  # slice 0 (stepped here) finished a started command not yet collected
        local_envs = []
        try:
            local_envs.append(make_env(self.specs[0], 0))  # the spaces, and the probe's window
            self.single_observation_space: spaces.Space[Any] = local_envs[0].observation_space
            self.single_action_space: spaces.Space[Any] = local_envs[0].action_space
            self.metadata: dict[str, Any] = dict(local_envs[0].metadata)
            self.render_mode: str | None = local_envs[0].render_mode
            cores = probe.read() if probe is not None else CoreCount(1, 1.0)
            processes = num_workers + (0 if caller_steps else 1)
            oversubscribed = cores.processes_for(processes) < processes
            if fit_workers and caller_steps and oversubscribed:
                num_workers = cores.processes_for(num_workers)
                warnings.warn(f"only {cores.free:.1f} of {cores.usable} cores are free: the env bank steps "
                              f"its {n} envs in {num_workers} process(es) instead of {processes} (results "
                              "are the same; pass fit_workers=False to keep them all)", OversubscribedWarning,
                              stacklevel=4)
            if spin_s is None:
                spin_s = 0.0 if oversubscribed else DEFAULT_SPIN_S
            self.spin_s = spin_s
            self.num_workers = num_workers
            self.num_slices = num_workers * slices_per_worker
            self.bounds = slice_bounds(n, self.num_slices)
            self.stats = BankStats(processes, num_workers + (0 if caller_steps else 1), cores.usable,
                                   round(cores.free, 2) if probe is not None else None, oversubscribed,
                                   spin_s > 0)
            for i in range(1, self.bounds[1] if caller_steps else 1):
                local_envs.append(make_env(self.specs[i], i))
            for i, env in enumerate(local_envs[1:], start=1):
                check_same_spaces(env, i, self.specs[i].name, self.spaces)
            self.obs_tree = SpaceTree(self.single_observation_space, "observation", self.specs[0].name)
            self.act_tree = SpaceTree(self.single_action_space, "action", self.specs[0].name)
            layout = bank_layout(n, self.num_slices, self.obs_tree, self.act_tree, OBS_BUFFERS)
            self._segment = SharedSegment.create(layout.size)
            self.arrays = layout.views(self._segment.buf)
            self.action_storage = self.arrays["actions"].dtype
            self._action_code = action_code(self.action_storage, self.action_storage)
            for name, code in zip(self.act_tree.names("actions"), self.act_tree.names("action_dtype"),
                                  strict=True):  # actions in the storage's own dtype until told otherwise
                self.arrays[code][:] = action_code(self.arrays[name].dtype, self.arrays[name].dtype)
            self.obs_leaves = obs_leaf_buffers(layout, self._segment.buf, self.obs_tree)
            self.obs_buffers = [self.obs_tree.unflatten(leaves) for leaves in self.obs_leaves]
            if caller_steps:
                self._local = SliceRunner(local_envs, 0, self.arrays, autoreset_mode)
                local_envs = []
            k = slices_per_worker
            for w in range(self._first, num_workers):
                slices = list(range(w * k, (w + 1) * k))
                lo, hi = self.bounds[slices[0]], self.bounds[slices[-1] + 1]
                worker = Worker(w, slices, self.bounds, self.specs[lo].name, self.arrays, spin_s, self._ready,
                                step_timeout)
                self.workers.append(worker)
                self._owner.update(dict.fromkeys(slices, worker))
                worker.start(self._segment.name, layout, cloudpickle.dumps((self.specs[lo:hi], self.spaces)),
                             autoreset_mode)
            for worker in self.workers:
                worker.wait_ready(START_TIMEOUT_S)
            if seed is not None:
                self.arrays["seeds"][:] = seed + np.arange(n)
        except BaseException:
            for env in local_envs:
                env.close()
            self.close()
            raise
        for env in local_envs:  # the probe env of a bank whose caller steps nothing
            env.close()

    @property
    def spaces(self) -> tuple[spaces.Space[Any], spaces.Space[Any]]:
        return self.single_observation_space, self.single_action_space

    def _check_open(self) -> None:
        if self._segment is None:
            raise EnvError("the env bank is closed")

    def _worker(self, s: int) -> Worker:
        """The worker process stepping slice ``s``."""
        return self._owner[s]

    def _run(self, cmd: int, payload: Any = None, per_env: Sequence[Any] | None = None) -> list[Any]:
        """One lock-step command over all slices; each slice's reply, in slice order. ``per_env`` values
        go with ``payload`` to the slices of their envs. An env that raises in a CALL or SET_ATTR re-raises
        its own exception and leaves the bank open; any other failure closes the bank and raises."""
        if self._running or self._local_done:
            raise EnvError("the env bank has asynchronous commands in flight; collect them with finished() "
                           "before a lock-step step, reset or call")
        self._check_open()
        replies: list[Any] = []
        failure: Exception | None = None
        try:
            for worker in self.workers:
                worker.send(cmd, payload if per_env is None else (payload, per_env[worker.lo:worker.hi]))
            if self._local is not None:
                try:
                    local = payload if per_env is None else (payload, per_env[:self._local.hi])
                    replies.append(self._run_local(self._local, cmd, local))
                except Exception as e:
                    failure = e
            for worker in self.workers:
                try:
                    worker.wait_done()
                    replies.append(worker.reply)
                except EnvError as e:  # an env raised; the other workers still finish their part
                    failure = failure or e
        except BaseException:
            self.close()
            raise
        if failure is not None:
            if cmd not in (CALL, SET_ATTR):
                self.close()
                raise failure
            own = failure.__cause__ if isinstance(failure, EnvError) else failure
            if not isinstance(own, Exception):
                raise failure  # the env's exception could not be pickled: its text then
            if own is not failure:
                own.add_note(f"(raised by {str(failure).splitlines()[0]})")
            raise own
        return replies

    def _run_local(self, runner: SliceRunner, cmd: int, payload: Any) -> Any:
        """Run ``cmd`` on slice 0, which this process steps itself; its reply."""
        if cmd in (CALL, SET_ATTR):
            try:
                return runner.call(*payload) if cmd == CALL else runner.set_attr(*payload)
            except Exception as e:
                i = runner.failed_env
                e.add_note(f"(raised by env {i} ({self.specs[i].name!r}, stepped by the main process))")
                raise
        try:
            runner.step() if cmd == STEP else runner.reset(payload)
        except Exception as e:
            i = runner.failed_env
            raise EnvError(f"env {i} ({self.specs[i].name!r}, stepped by the main process) raised "
                           f"{type(e).__name__}: {e}") from e
        return runner.events or None

    def _run_events(self, cmd: int, payload: Any = None) -> None:
        """A lock-step STEP or RESET; ``events`` gets every slice's infos, in env order."""
        self.events = [event for reply in self._run(cmd, payload) if reply for event in reply]

    def call(self, name: str, *args: Any, **kwargs: Any) -> list[Any]:
        """Every env's attribute ``name`` (called with ``args`` and ``kwargs`` if callable), in env order."""
        return [x for reply in self._run(CALL, (name, args, kwargs)) for x in reply]

    def set_attr(self, name: str, values: Sequence[Any]) -> None:
        """Set attribute ``name`` of env i to ``values[i]``."""
        if len(values) != self.num_envs:
            raise EnvError(f"set_attr({name!r}) got {len(values)} values for {self.num_envs} envs")
        self._run(SET_ATTR, name, list(values))

    def start(self, cmd: int, slices: Sequence[int], payload: Any = None) -> None:
        """Start ``cmd`` (STEP or RESET) on ``slices`` without waiting for them to finish; collect them with
        ``finished``. Slice 0, if this process steps it, runs to the end here, after the others started.
        Observations go to ``obs_buffers[0]``."""
        self._check_open()
        busy = [s for s in slices if s in self._running or (s == 0 and self._local_done)]
        if busy:
            raise EnvError(f"slice {busy[0]} of the env bank is still busy with its last command; collect it "
                           "with finished() first")
        try:
            self.arrays["obs_buffer"][0] = self.last_buffer = 0
            for s in slices:
                if s >= self._first:
                    self._worker(s).send(cmd | ASYNC, payload, s)
                    self._running.add(s)
            if self._local is not None and 0 in slices:
                self._run_local(self._local, cmd, payload)
                self._local_done = True
        except BaseException:
            self.close()
            raise

    @property
    def running(self) -> bool:
        """Whether a started command has not been collected by ``finished`` yet."""
        return bool(self._running) or self._local_done

    def finished(self, wait: bool = True) -> list[int]:
        """The slices whose started command finished since the last call: workers' in slice order, then
        slice 0 (it finished at the end of ``start``, most likely after them). With ``wait``, blocks until
        there is at least one (if any is running). Failures close the bank and raise.

        Every finished worker command posts the shared ready semaphore once, just after its own notice.
        ``_ready_debt`` counts commands found less posts taken: posts found owed are taken at once, so
        they never pile up; a wait may take a post whose command is found only on the next look (the debt
        is then negative for a moment) or one owed already (then it simply waits again)."""
        try:
            local = [0] if self._local_done else []
            self._local_done = False
            done: list[int] = []
            while True:
                new = [s for s in sorted(self._running) if self._worker(s).poll_done(s)]
                self._running.difference_update(new)
                done += new
                self._ready_debt += len(new)
                while self._ready_debt > 0 and self._ready.acquire(False):
                    self._ready_debt -= 1
                if done or local or not wait or not self._running:
                    return done + local
                if spin_acquire(self._ready, self.spin_s) or self._ready.acquire(timeout=POLL_S):
                    self._ready_debt -= 1  # owed for a command found already, or about to be found
                else:
                    for s in self._running:
                        self._worker(s).check_alive(s)
        except BaseException:
            self.close()
            raise

    def shm_names(self) -> list[str]:
        """This bank's entries in /dev/shm (its segment, its processes' semaphores), for a supervisor that
        must remove them should this process be killed (a Ray actor is killed with SIGKILL)."""
        sems = [self._ready, *(s for w in self.workers for s in (w.cmd_sem, *w.done_sems.values()))]
        names = [f"sem.{str(getattr(s, '_semlock').name).lstrip('/')}" for s in sems]  # noqa: B009
        return names + ([self._segment.name] if self._segment is not None else [])

    @property
    def obs(self) -> Any:
        """The observations of the last step or reset (the bank's own buffer: copy what you keep); a dict or
        tuple of arrays for a Dict or Tuple space."""
        return self.obs_buffers[self.last_buffer]

    def _fill(self, buffer: int) -> None:
        if not 0 <= buffer < len(self.obs_buffers):
            raise EnvError(f"obs buffer {buffer} does not exist; the bank has {len(self.obs_buffers)}")
        self.arrays["obs_buffer"][0] = buffer

    def step(self, actions: np.ndarray[Any, Any], buffer: int = 0) -> None:
        """Step every env with ``actions`` (a batch of the action space: arrays, in a dict or tuple for a Dict
        or Tuple space); observations go to ``obs_buffers[buffer]``, the rest to ``arrays``."""
        self._check_open()
        if self.act_tree.plain:
            self.arrays["actions"][...] = actions
            code = action_code(actions.dtype, self.action_storage)
            if code != self._action_code:  # the envs get actions of the caller's dtype (spec.py)
                self.arrays["action_dtype"][:] = self._action_code = code
        else:
            store_actions(self.act_tree, self.arrays, slice(None), actions)
        self._fill(buffer)
        self._run_events(STEP)
        self.last_buffer = buffer

    def reset(self, seeds: Sequence[int | None] | None = None, options: dict[str, Any] | None = None,
              buffer: int = 0) -> None:
        """Reset every env (those in ``options["reset_mask"]`` if given); ``seeds[i]`` seeds env i.

        Observations go to ``obs_buffers[buffer]``; envs left out by a mask keep their last observation."""
        self._check_open()
        self._fill(buffer)
        if options is not None and "reset_mask" in options:
            self.arrays["reset_mask"][:] = np.asarray(options["reset_mask"], dtype=bool)
            if buffer != self.last_buffer:
                leaves = self.obs_leaves
                for leaf, last in zip(leaves[buffer], leaves[self.last_buffer], strict=True):
                    leaf[...] = last
        if seeds is None:
            self.arrays["seeded"][:] = False
        else:
            self.arrays["seeded"][:] = [s is not None for s in seeds]
            self.arrays["seeds"][:] = [0 if s is None else s for s in seeds]
        self._run_events(RESET, options)
        self.arrays["seeded"][:] = False
        self.last_buffer = buffer

    def close(self) -> None:
        """Stop every worker (killing any that hang), close the envs, unlink the segment. Safe to repeat."""
        errors: list[BaseException] = []
        for worker in self.workers:
            try:
                worker.stop()
            except Exception as e:
                errors.append(e)
        self.workers = []
        self._owner = {}
        if self._local is not None:
            local, self._local = self._local, None
            try:
                local.close()
            except Exception as e:
                errors.append(e)
        self.arrays = {}
        self.obs_buffers, self.obs_leaves = [], []
        if self._segment is not None:
            self._segment.close()
            self._segment = None
        if errors:
            raise ReflowError(f"closing the env bank failed: {errors[0]}") from errors[0]

    def __enter__(self) -> EnvBank:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
