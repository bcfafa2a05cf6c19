"""Stepping one contiguous slice of a bank's envs on shared arrays.

The same ``SliceRunner`` runs in every worker process and in the parent (which steps slice 0 itself while the
workers step theirs). It reads actions from and writes results to the shared views in place, so the only
per-step traffic between processes is a wake-up. Observations go into the batch buffer the parent names in
``obs_buffer`` (see ``EnvBank``); a ``Dict`` or ``Tuple`` observation goes leaf by leaf into its leaves'
arrays (``space_tree.py``), and such an action is put together per env from its leaves. Auto-reset is done
here, next to the env, in one of gymnasium's three modes:

- NEXT_STEP (gymnasium's default): an env that ended is reset on the following step; that step's action is
  ignored, its reward is 0 and its flags are False.
- SAME_STEP: an env that ends is reset at once; the episode's last observation and info go to the infos as
  ``final_obs`` / ``final_info``, as ``SyncVectorEnv`` puts them.
- DISABLED: nothing is reset automatically; ``reset(options={"reset_mask": mask})`` resets some envs.

Speed. A step is one tight loop that makes each env's *next call* (``env.step``, or under NEXT_STEP the reset
that begins its next episode) and keeps the result tuple; everything else is done per slice with one numpy
call per array. Per-env Python work beside the env's own step (index arithmetic, list appends, counters)
costs about as much as a small env's step itself, so the loop does none of it.

Infos. After each command ``events`` lists ``(env index, info dict)`` in the order ``SyncVectorEnv`` merges
them (envs in order; an env that ended under SAME_STEP gives its final pair, then its reset info); empty
dicts are left out, so envs that report nothing (CartPole) cost nothing more.

Episode statistics are kept here too, beside the envs, so that they cost the parent nothing per step: when
an env's episode ends, its return, length and wall time go to ``episode_return`` / ``episode_length`` /
``episode_time`` and ``ended`` marks it; they stay for that step only (the next step clears them), so a
reader copies the arrays as they are. They are counted from the rewards the env returns, or read from the
innermost ``RecordEpisodeStatistics`` of each env's stack when every env has one (``spec.py`` says when).
``done`` is terminated or truncated.

With a ``progress`` slot (a bank with a step timeout) each env call first writes the env's index there, so
the parent can name the env a hung worker is stuck in; without one the loop does no such work.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode

from reflow.rl.envs.space_tree import SpaceTree
from reflow.rl.envs.spec import ACTION_DTYPES, episode_recorder

NEXT_STEP, SAME_STEP, DISABLED = 0, 1, 2
LARGE_OBS_BYTES = 1024
MODE_CODES = {AutoresetMode.NEXT_STEP: NEXT_STEP, AutoresetMode.SAME_STEP: SAME_STEP,
              AutoresetMode.DISABLED: DISABLED}
StepResult = tuple[Any, Any, Any, Any, Any]  # obs, reward, terminated, truncated, info
Events = list[tuple[int, dict[str, Any]]]


class SliceRunner:
    """Envs ``lo..hi-1`` of a bank, stepped into the shared views ``arrays``. ``progress`` is the slot of
    this slice in ``arrays["progress"]`` when the bank watches for hung envs, else None. The envs have the
    spaces of the bank's env 0 (checked where they are made)."""

    def __init__(self, envs: list[gym.Env[Any, Any]], lo: int, arrays: dict[str, np.ndarray[Any, Any]],
                 mode: int, progress: int | None = None) -> None:
        self.envs = envs
        self.lo, self.hi = lo, lo + len(envs)
        self.a = arrays
        self.mode = mode
        self.obs_tree = SpaceTree(envs[0].observation_space)
        self.act_tree = SpaceTree(envs[0].action_space, "action")
        self.discrete = isinstance(envs[0].action_space, gym.spaces.Discrete)
        self.failed_env = -1  # the bank index of the env whose call raised, for the error message
        self.events: Events = []
        self.progress = progress
        # What each env does on the next step: its own ``step``, or (NEXT_STEP, after its episode ended) a
        # reset that reports itself as a step with reward 0; ``restarting`` lists the latter.
        self.steps = [self._watched(k, env.step) for k, env in enumerate(envs)]
        self.calls = list(self.steps)
        self.restarts = [self._watched(k, self._restart(k)) for k in range(len(envs))]
        self.restarting: list[int] = []
        # Large observations (images) are stored one by one as they come, while still in the cache (which
        # also saves numpy a temporary batch, a second copy of every frame); small ones with one call.
        self.obs_one_by_one = self.obs_tree.plain and arrays["obs"][0, 0].nbytes >= LARGE_OBS_BYTES
        found = [episode_recorder(env) for env in envs]
        recorders = [r for r in found if r is not None]
        self.recorders = recorders if len(recorders) == len(envs) else None
        self.counted = [r.episode_count for r in recorders]
        self.returns = np.zeros(len(envs))  # of the running episodes
        self.count = 0  # steps this slice made; an episode's length is the count less its ``began``
        self.began = [0] * len(envs)
        self.starts = [time.perf_counter()] * len(envs)
        self.recorded: list[int] = []  # envs whose episode statistics the last step wrote
        # This slice's part of each per-step array, viewed once (a view per array and step adds up).
        lo, hi = self.lo, self.hi
        self.actions, self.rewards = arrays["actions"][lo:hi], arrays["rewards"][lo:hi]
        self.action_dtype = arrays["action_dtype"][lo:hi]  # the caller's dtype (a slice's actions share it)
        # Every leaf of the action space: its actions, dtype codes, and whether a row is a scalar (a copy).
        self.action_leaves = [(arrays[name][lo:hi], arrays[code][lo:hi], leaf.shape == ())
                              for name, code, leaf in zip(self.act_tree.names("actions"),
                                                          self.act_tree.names("action_dtype"),
                                                          self.act_tree.leaves, strict=True)]
        self.terminated, self.truncated = arrays["terminated"][lo:hi], arrays["truncated"][lo:hi]
        self.done = arrays["done"][lo:hi]
        # Per batch buffer, the arrays of the observation space's leaves.
        leaves = [arrays[name] for name in self.obs_tree.names("obs")]
        self.obs_buffers = [[leaf[b] for leaf in leaves] for b in range(len(leaves[0]))]
        self.obs_buffer = arrays["obs_buffer"]

    def _watched(self, k: int, call: Callable[[Any], StepResult]) -> Callable[[Any], StepResult]:
        """``call``, first noting env k in this slice's progress word if the bank watches for hangs."""
        if self.progress is None:
            return call
        progress, slot, i = self.a["progress"], self.progress, self.lo + k

        def watched(action: Any) -> StepResult:
            progress[slot] = i
            return call(action)

        return watched

    def _actions(self) -> Any:
        """The envs' actions, in the caller's dtype, as SyncVectorEnv hands them on: Discrete ones stored in
        that dtype as numpy integers read from the array; others as rows of a copy in that dtype, which the
        parent may overwrite later. A Dict or Tuple action is put together per env from its leaves."""
        if self.act_tree.plain:
            dtype = ACTION_DTYPES[self.action_dtype[0]]
            same = self.discrete and dtype == self.actions.dtype
            return self.actions if same else self.actions.astype(dtype)
        columns = []
        for actions, codes, scalar in self.action_leaves:
            dtype = ACTION_DTYPES[codes[0]]
            columns.append(actions if scalar and dtype == actions.dtype else actions.astype(dtype))
        return [self.act_tree.unflatten(row) for row in zip(*columns, strict=True)]

    def step(self) -> None:
        lo, hi = self.lo, self.hi
        actions = self._actions()
        outs = self._obs_target()
        out = outs[0]
        results: list[StepResult] = []
        append = results.append
        try:
            if self.obs_one_by_one:
                for k, (call, action) in enumerate(zip(self.calls, actions, strict=True), start=lo):
                    result = call(action)
                    out[k] = result[0]  # while the frame is in the cache
                    append(result)
            else:
                for call, action in zip(self.calls, actions, strict=True):
                    append(call(action))
        except Exception:
            self.failed_env = lo + len(results)
            raise
        obs, rews, terms, truncs, infos = zip(*results, strict=True)
        if not self.obs_one_by_one:
            try:
                self.obs_tree.put_rows(outs, lo, hi, obs)
            except Exception:
                self._put_each(outs, obs)  # raises again, naming the env
                raise
        self.rewards[:] = rews
        self.terminated[:] = terms
        self.truncated[:] = truncs
        self.events = [(i, info) for i, info in enumerate(infos, start=lo) if info]
        done = np.logical_or(self.terminated, self.truncated, out=self.done)
        self.returns += self.rewards
        self.count += 1
        if self.restarting:
            restarting, self.restarting = self.restarting, []
            for k in restarting:
                self.calls[k] = self.steps[k]
            self._begun(restarting)
        if self.recorded:
            self._clear_recorded()
        if True in terms or True in truncs:
            self._episodes_ended(done.nonzero()[0].tolist(), outs, obs, infos)

    def _put_each(self, outs: list[np.ndarray[Any, Any]], obs: tuple[Any, ...]) -> None:
        """Write the observations one env at a time, so that one that does not fit names its env."""
        for k, o in enumerate(obs):
            self.failed_env = self.lo + k
            self.obs_tree.put(outs, self.lo + k, o)
        self.failed_env = -1

    def _restart(self, k: int) -> Callable[[Any], StepResult]:
        """Env k's next call under NEXT_STEP: a reset, reported as a step with reward 0 and no flags."""
        reset = self.envs[k].reset

        def restart(_action: Any) -> StepResult:
            o, info = reset()
            return o, 0.0, False, False, info

        return restart

    def _episodes_ended(self, ended: list[int], outs: list[np.ndarray[Any, Any]], obs: tuple[Any, ...],
                        infos: tuple[dict[str, Any], ...]) -> None:
        """Record the episodes of envs ``ended`` (slice indices) and auto-reset them as the mode says
        (SAME_STEP: at once, the episode's last observation and info going to the infos as final pair)."""
        self._record(ended)
        if self.mode == NEXT_STEP:
            for k in ended:
                self.calls[k] = self.restarts[k]
            self.restarting = ended
        elif self.mode == SAME_STEP:
            lo = self.lo
            resets: dict[int, dict[str, Any]] = {}
            for k in ended:
                self.failed_env = lo + k
                if self.progress is not None:
                    self.a["progress"][self.progress] = lo + k
                first, resets[k] = self.envs[k].reset()
                self.obs_tree.put(outs, lo + k, first)
            self.failed_env = -1
            self._begun(ended)
            events: Events = []
            for k, info in enumerate(infos):
                if k in resets:
                    events.append((lo + k, {"final_obs": obs[k], "final_info": info}))
                    info = resets[k]
                if info:
                    events.append((lo + k, info))
            self.events = events

    def _record(self, ended: list[int]) -> None:
        """Write the statistics of the episodes that ended (from the envs' recorders if they have them)."""
        a, lo = self.a, self.lo
        ret, length, secs, mark = a["episode_return"], a["episode_length"], a["episode_time"], a["ended"]
        recorded = []
        now = time.perf_counter()
        for k in ended:  # a few envs: scalar stores cost less than numpy's fancy indexing
            if self.recorders is None:
                ret[lo + k], length[lo + k] = self.returns[k], self.count - self.began[k]
                secs[lo + k] = round(now - self.starts[k], 6)
            else:
                rec = self.recorders[k]
                if rec.episode_count == self.counted[k]:
                    continue  # the outer episode ended (a life lost), the game did not
                self.counted[k] = rec.episode_count
                ret[lo + k], length[lo + k] = rec.return_queue[-1], rec.length_queue[-1]
                secs[lo + k] = rec.time_queue[-1]
            mark[lo + k] = True
            recorded.append(k)
        self.recorded = recorded

    def _obs_target(self) -> list[np.ndarray[Any, Any]]:
        """The leaf arrays of the batch buffer the parent named for this command's observations."""
        return self.obs_buffers[self.obs_buffer[0]]

    def _begun(self, envs: list[int]) -> None:
        """Envs ``envs`` (slice indices) have just been reset: their episodes start now."""
        now = time.perf_counter()
        for k in envs:
            self.returns[k] = 0.0
            self.began[k] = self.count
            self.starts[k] = now

    def _clear_recorded(self) -> None:
        """Zero the episode statistics the last step wrote: they are non-zero only on the step that ended
        the episode, so a reader takes them as they are (``EpisodeLog``)."""
        a, lo = self.a, self.lo
        ret, length, secs, mark = a["episode_return"], a["episode_length"], a["episode_time"], a["ended"]
        for k in self.recorded:
            ret[lo + k] = length[lo + k] = secs[lo + k] = 0
            mark[lo + k] = False
        self.recorded = []

    def reset(self, options: dict[str, Any] | None) -> None:
        a, lo = self.a, self.lo
        outs = self._obs_target()
        masked = options is not None and "reset_mask" in options
        rest = {k: v for k, v in (options or {}).items() if k != "reset_mask"} or None
        self.events = []
        for k, env in enumerate(self.envs):
            i = lo + k
            if masked and not a["reset_mask"][i]:
                continue
            self.failed_env = i
            if self.progress is not None:
                a["progress"][self.progress] = i
            seed = int(a["seeds"][i]) if a["seeded"][i] else None
            first, info = env.reset(seed=seed, options=rest)
            self.obs_tree.put(outs, i, first)
            if info:
                self.events.append((i, info))
            a["rewards"][i] = a["episode_return"][i] = a["episode_time"][i] = 0.0
            a["terminated"][i] = a["truncated"][i] = a["done"][i] = a["ended"][i] = False
            a["episode_length"][i] = 0
            self.calls[k] = self.steps[k]
            self._begun([k])
        self.restarting = [k for k in self.restarting if self.calls[k] is not self.steps[k]]
        self.recorded = [k for k in self.recorded if a["ended"][lo + k]]
        self.failed_env = -1

    def call(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> list[Any]:
        """Each env's attribute ``name`` (looked up through its wrappers), called with ``args`` and ``kwargs``
        if it is callable, as ``SyncVectorEnv.call`` does."""
        out = []
        for k, env in enumerate(self.envs):
            self.failed_env = self.lo + k
            attr = env.get_wrapper_attr(name)
            out.append(attr(*args, **kwargs) if callable(attr) else attr)
        self.failed_env = -1
        return out

    def set_attr(self, name: str, values: list[Any]) -> None:
        """Set attribute ``name`` of env k (through its wrappers) to ``values[k]``."""
        for k, (env, value) in enumerate(zip(self.envs, values, strict=True)):
            self.failed_env = self.lo + k
            env.set_wrapper_attr(name, value)
        self.failed_env = -1

    def close(self) -> None:
        for env in self.envs:
            env.close()
