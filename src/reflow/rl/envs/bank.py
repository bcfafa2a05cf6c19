"""EnvBank: N gymnasium envs replicated over worker processes, stepped in lock-step on shared memory.

The bank splits its envs into ``num_workers`` contiguous slices. Slice 0 is stepped by the calling process
itself (it would otherwise sit idle waiting), slices 1.. by worker processes; with ``num_workers=1`` there
is no process at all. Observations, actions, rewards and done flags live in one shared segment that every
process maps, so ``step`` is: write actions, wake the workers, step slice 0, wait for the workers. Env i is
always seeded with ``seed + i`` and is stepped by exactly one process, so results do not depend on
``num_workers``.

Observations have ``OBS_BUFFERS`` batch buffers (``obs_buffers``); each step or reset names the one to fill.
A caller can then hand a filled batch out without copying it and fill another one next, as long as the
first is still in use (``BankVectorEnv`` does so).

The bank owns its segment and processes; ``close()`` (or leaving the ``with`` block, or any error) stops the
workers, kills those that do not stop, and unlinks the segment.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from types import TracebackType
from typing import Any

import numpy as np
from gymnasium import spaces

from reflow.errors import EnvError, ReflowError
from reflow.rl.envs.slice import SliceRunner
from reflow.rl.envs.spec import EnvSpec, array_shape, bank_layout, check_env_id, check_same_spaces, make_env
from reflow.rl.envs.worker import RESET, STEP, Worker
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


class EnvBank:
    """``len(specs)`` envs over ``num_workers`` processes (the caller's included); see the module doc."""

    def __init__(self, specs: Sequence[EnvSpec], num_workers: int = 1, seed: int | None = 0,
                 autoreset_mode: int = 0, spin_s: float | None = None) -> None:
        self.specs = list(specs)
        n = len(self.specs)
        if n < 1:
            raise EnvError("an env bank needs at least one env")
        if not 1 <= num_workers <= n:
            raise EnvError(f"num_workers must be between 1 and num_envs={n}, got {num_workers}")
        for env_id in sorted({s.env_id for s in self.specs}):
            check_env_id(env_id)
        self.num_envs, self.num_workers, self.seed = n, num_workers, seed
        if spin_s is None:
            spin_s = DEFAULT_SPIN_S if num_workers <= (os.cpu_count() or 1) else 0.0
        self.bounds = slice_bounds(n, num_workers)
        self.workers: list[Worker] = []
        self._segment: SharedSegment | None = None
        self._local: SliceRunner | None = None
        self.arrays: dict[str, np.ndarray[Any, Any]] = {}
        self.obs_buffers: list[np.ndarray[Any, Any]] = []
        self.last_buffer = 0  # the buffer the last step or reset filled
        local_envs = []
        try:
            for i in range(self.bounds[1]):
                local_envs.append(make_env(self.specs[i], i))
            self.single_observation_space: spaces.Space[Any] = local_envs[0].observation_space
            self.single_action_space: spaces.Space[Any] = local_envs[0].action_space
            for i, env in enumerate(local_envs[1:], start=1):
                check_same_spaces(env, i, self.specs[i].env_id, self.spaces)
            obs = array_shape(self.single_observation_space, "observation", self.specs[0].env_id)
            act = array_shape(self.single_action_space, "action", self.specs[0].env_id)
            self.discrete = isinstance(self.single_action_space, spaces.Discrete)
            layout = bank_layout(n, num_workers, obs, act, OBS_BUFFERS)
            self._segment = SharedSegment.create(layout.size)
            self.arrays = layout.views(self._segment.buf)
            self.obs_buffers = layout.split(self._segment.buf, "obs")
            self._local = SliceRunner(local_envs, 0, self.arrays, autoreset_mode, self.discrete)
            local_envs = []
            for w in range(1, num_workers):
                lo, hi = self.bounds[w], self.bounds[w + 1]
                worker = Worker(w, lo, hi, self.specs[lo].env_id, self.arrays, spin_s)
                self.workers.append(worker)
                worker.start(self._segment.name, layout, self.specs, autoreset_mode, self.discrete,
                             self.spaces)
            for worker in self.workers:
                worker.wait_ready(START_TIMEOUT_S)
            if seed is not None:
                self.arrays["seeds"][:] = seed + np.arange(n)
        except BaseException:
            for env in local_envs:
                env.close()
            self.close()
            raise

    @property
    def spaces(self) -> tuple[spaces.Space[Any], spaces.Space[Any]]:
        return self.single_observation_space, self.single_action_space

    def _runner(self) -> SliceRunner:
        if self._local is None:
            raise EnvError("the env bank is closed")
        return self._local

    def _run(self, cmd: int, payload: Any = None) -> None:
        """One lock-step command over all slices; any failure closes the bank and raises."""
        runner = self._runner()
        try:
            for worker in self.workers:
                worker.send(cmd, payload)
            try:
                runner.step() if cmd == STEP else runner.reset(payload)
            except Exception as e:
                i = runner.failed_env
                raise EnvError(f"env {i} ({self.specs[i].env_id!r}, stepped by the main process) raised "
                               f"{type(e).__name__}: {e}") from e
            for worker in self.workers:
                worker.wait_done()
        except BaseException:
            self.close()
            raise

    @property
    def obs(self) -> np.ndarray[Any, Any]:
        """The observations of the last step or reset (the bank's own buffer: copy what you keep)."""
        return self.obs_buffers[self.last_buffer]

    def _fill(self, buffer: int) -> None:
        if not 0 <= buffer < len(self.obs_buffers):
            raise EnvError(f"obs buffer {buffer} does not exist; the bank has {len(self.obs_buffers)}")
        self.arrays["obs_buffer"][0] = buffer

    def step(self, actions: np.ndarray[Any, Any], buffer: int = 0) -> None:
        """Step every env; observations go to ``obs_buffers[buffer]``, the rest to ``arrays``."""
        self._runner()
        self.arrays["actions"][...] = actions
        self._fill(buffer)
        self._run(STEP)
        self.last_buffer = buffer

    def reset(self, seeds: Sequence[int | None] | None = None, options: dict[str, Any] | None = None,
              buffer: int = 0) -> None:
        """Reset every env (those in ``options["reset_mask"]`` if given); ``seeds[i]`` seeds env i.

        Observations go to ``obs_buffers[buffer]``; envs left out by a mask keep their last observation."""
        self._runner()
        self._fill(buffer)
        if options is not None and "reset_mask" in options:
            self.arrays["reset_mask"][:] = np.asarray(options["reset_mask"], dtype=bool)
            if buffer != self.last_buffer:
                self.obs_buffers[buffer][...] = self.obs_buffers[self.last_buffer]
        if seeds is None:
            self.arrays["seeded"][:] = False
        else:
            self.arrays["seeded"][:] = [s is not None for s in seeds]
            self.arrays["seeds"][:] = [0 if s is None else s for s in seeds]
        self._run(RESET, options)
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
        if self._local is not None:
            local, self._local = self._local, None
            try:
                local.close()
            except Exception as e:
                errors.append(e)
        self.arrays = {}
        self.obs_buffers = []
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
