"""The env bank on Ray: slices of envs on the nodes of a cluster, each node stepping its own on shared memory.

Policy. ``RayEnvBank`` has the interface ``BankVectorEnv`` and ``AsyncBankEnv`` drive an ``EnvBank`` with
(``step``/``reset``/``call``/``set_attr`` in lock-step, ``start``/``finished`` slice by slice, the same
``arrays`` and ``obs_buffers``), so ``make_vec(..., backend="ray")`` and ``make_async(..., backend="ray")``
are the same vector envs with their envs elsewhere. The envs are cut into *units*, contiguous ranges spread
over the nodes in order; each unit is a Ray actor pinned to its node that owns an ordinary ``EnvBank`` over
its range (its own worker processes, its own shared segment). A lock-step bank has one unit per node, whose
local bank steps that node's slices in parallel, so a step costs one actor call per node; an asynchronous
bank has one unit per slice, so each slice comes back as soon as it is done.

Determinism. Env i is built from the same spec, seeded with the same seed and stepped with the same actions
as in a local bank, wherever it runs; the driver gathers every unit's results into its own arrays in env
order. So trajectories are the local bank's, bit for bit, for any number of nodes.

Faults. A unit that fails raises what its env raised (as a local bank does); a unit whose actor or node
died raises ``NodeLost`` naming the env slice and the node. ``close`` closes each unit's bank, ends its
actor, and removes what a killed unit left in shared memory on its node.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

import cloudpickle
import numpy as np
from gymnasium import spaces

from reflow.errors import EnvError, NodeLost
from reflow.rl.envs.bank import OBS_BUFFERS, START_TIMEOUT_S, BankStats, EnvBank, slice_bounds
from reflow.rl.envs.slice import Events
from reflow.rl.envs.space_tree import SpaceTree
from reflow.rl.envs.spec import ACTION_DTYPES, EnvSpec, bank_layout, obs_leaf_buffers, resolve, store_actions
from reflow.rl.envs.worker import RESET, STEP
from reflow.runtime.ray_cluster import (
    NodeInfo,
    RayCluster,
    affinity,
    clean_up_after,
    connect,
    nodes,
    require_ray,
)

BACKENDS = ("local", "ray")
PER_ENV = ("rewards", "terminated", "truncated", "done", "episode_return", "episode_length", "episode_time",
           "ended")
CLOSE_TIMEOUT_S = 10.0


def check_backend(backend: str) -> None:
    if backend not in BACKENDS:
        raise EnvError(f"unknown env bank backend {backend!r}; choose one of {', '.join(BACKENDS)}")


class BankUnit:
    """Ray actor body: an ordinary ``EnvBank`` over envs ``lo..`` of the whole bank, on one node."""

    def __init__(self, specs_pickle: bytes, lo: int, workers: int, autoreset_mode: int,
                 step_timeout: float | None, fit_workers: bool) -> None:
        self.lo = lo
        self.bank = EnvBank(cloudpickle.loads(specs_pickle), num_workers=workers, seed=None,
                            autoreset_mode=autoreset_mode, step_timeout=step_timeout, fit_workers=fit_workers)

    def describe(self) -> dict[str, Any]:
        import os

        b = self.bank
        return {"spaces": b.spaces, "metadata": b.metadata, "render_mode": b.render_mode,
                "pids": [os.getpid(), *(w.proc.pid for w in b.workers if w.proc is not None)],
                "shm": b.shm_names(), "stats": b.stats}

    def _reply(self) -> dict[str, Any]:
        """What the driver copies out after a step or reset: observations, per-env arrays, infos."""
        out: dict[str, Any] = {k: self.bank.arrays[k] for k in PER_ENV}
        out["obs"] = self.bank.obs_buffers[0]
        out["events"] = [(self.lo + i, info) for i, info in self.bank.events]
        return out

    def step(self, actions: np.ndarray[Any, Any]) -> dict[str, Any]:
        self.bank.step(actions, buffer=0)
        return self._reply()

    def reset(self, seeds: list[int | None], options: dict[str, Any] | None) -> dict[str, Any]:
        self.bank.reset(seeds, options, buffer=0)
        return self._reply()

    def call(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> list[Any]:
        return self.bank.call(name, *args, **kwargs)

    def set_attr(self, name: str, values: list[Any]) -> None:
        self.bank.set_attr(name, values)

    def close(self) -> None:
        self.bank.close()


class RayEnvBank:
    """``len(specs)`` envs in ``num_workers`` slices on the nodes of a Ray cluster; see the module doc.

    ``per_node``: one unit per node, stepping that node's slices in lock-step (``make_vec``), else one
    unit per slice (``make_async``). ``address`` and ``nodes`` choose the cluster and how many of its nodes
    to use (default all); a connection opened here is closed by ``close``."""

    def __init__(self, specs: Sequence[EnvSpec], num_workers: int = 1, *, per_node: bool = True,
                 autoreset_mode: int = 0, step_timeout: float | None = None, fit_workers: bool = True,
                 address: str | None = None, nodes_used: int | None = None) -> None:
        n = len(specs)
        if not 1 <= num_workers <= n:
            raise EnvError(f"num_workers must be between 1 and num_envs={n}, got {num_workers}")
        self.specs = resolve(specs)
        self.num_envs = n
        self.events: Events = []
        self.last_buffer = 0
        self._units: list[Any] = []
        self._pending: dict[int, Any] = {}  # slice -> the ref of its started command
        self._leftovers: list[tuple[NodeInfo, list[int], list[str]]] = []
        self._connection: RayCluster | None = connect(address)
        try:
            self._start(num_workers, per_node, autoreset_mode, step_timeout, fit_workers, nodes_used)
        except BaseException:
            self.close()
            raise

    def _start(self, num_workers: int, per_node: bool, autoreset_mode: int, step_timeout: float | None,
               fit_workers: bool, nodes_used: int | None) -> None:
        ray = require_ray()
        alive = nodes()[:nodes_used or None]
        slices = slice_bounds(self.num_envs, num_workers)
        units = min(len(alive), num_workers) if per_node else num_workers
        self.num_slices = units
        first = slice_bounds(num_workers, units)  # unit u steps slices first[u]..first[u+1]-1
        self.bounds = [slices[s] for s in first]
        self.placed = [alive[u * len(alive) // units] for u in range(units)]  # contiguous over the nodes
        actor = ray.remote(BankUnit)
        for u in range(units):
            lo, hi = self.bounds[u], self.bounds[u + 1]
            self._units.append(actor.options(num_cpus=0, max_restarts=0,
                                             scheduling_strategy=affinity(self.placed[u].node_id)).remote(
                cloudpickle.dumps(self.specs[lo:hi]), lo, first[u + 1] - first[u], autoreset_mode,
                step_timeout, fit_workers))
        infos = self._gather([u.describe.remote() for u in self._units], range(units), START_TIMEOUT_S)
        self._leftovers = [(self.placed[u], info["pids"], info["shm"]) for u, info in enumerate(infos)]
        self.single_observation_space: spaces.Space[Any] = infos[0]["spaces"][0]
        self.single_action_space: spaces.Space[Any] = infos[0]["spaces"][1]
        self.metadata: dict[str, Any] = infos[0]["metadata"]
        self.render_mode: str | None = infos[0]["render_mode"]
        every = [info["stats"] for info in infos]  # each node's bank, summed up
        free = [s.free_cores for s in every if s.free_cores is not None]
        self.stats = BankStats(sum(s.requested_workers for s in every), sum(s.workers for s in every),
                               sum(s.usable_cores for s in every), round(sum(free), 2) if free else None,
                               any(s.oversubscribed for s in every), any(s.spinning for s in every))
        for u, info in enumerate(infos[1:], start=1):
            if info["spaces"] != self.spaces:
                raise EnvError(f"envs {self.bounds[u]}.. ({self.specs[self.bounds[u]].name!r}) have spaces "
                               f"{info['spaces']}, env 0 has {self.spaces}: every env of a bank must have "
                               "the same spaces")
        self.obs_tree = SpaceTree(self.single_observation_space, "observation", self.specs[0].name)
        self.act_tree = SpaceTree(self.single_action_space, "action", self.specs[0].name)
        layout = bank_layout(self.num_envs, units, self.obs_tree, self.act_tree, OBS_BUFFERS)
        self._memory = memoryview(bytearray(layout.size))  # plain memory: nobody else maps it
        self.arrays = layout.views(self._memory)
        self.obs_leaves = obs_leaf_buffers(layout, self._memory, self.obs_tree)
        self.obs_buffers = [self.obs_tree.unflatten(leaves) for leaves in self.obs_leaves]

    @property
    def spaces(self) -> tuple[spaces.Space[Any], spaces.Space[Any]]:
        return self.single_observation_space, self.single_action_space

    def _describe(self, u: int) -> str:
        lo, hi = self.bounds[u], self.bounds[u + 1]
        where = self.placed[u].describe()
        return f"env slice {u} (envs {lo}..{hi - 1} of {self.specs[lo].name!r}) on {where}"

    def _gather(self, refs: Sequence[Any], units: Sequence[int], timeout: float | None = None) -> list[Any]:
        """The units' replies; a unit's own error re-raised, a lost unit as ``NodeLost``; any failure closes
        the bank (as a local bank closes when a worker fails)."""
        ray = require_ray()
        out = []
        try:
            for ref, u in zip(refs, units, strict=True):
                try:
                    out.append(ray.get(ref, timeout=timeout))
                except ray.exceptions.RayTaskError as e:
                    cause = e.cause
                    if isinstance(cause, Exception):
                        raise cause from None
                    raise EnvError(f"{self._describe(u)} failed: {e}") from None
                except ray.exceptions.GetTimeoutError:
                    raise EnvError(f"{self._describe(u)} did not answer within {timeout:.0f} s") from None
                except ray.exceptions.RayError as e:
                    raise NodeLost(f"{self._describe(u)} was lost ({type(e).__name__}: {e}); the bank is "
                                   "closed, make a new one") from None
        except BaseException:
            self.close()
            raise
        return out

    def _take(self, u: int, reply: dict[str, Any], buffer: int) -> None:
        lo, hi = self.bounds[u], self.bounds[u + 1]
        for out, leaf in zip(self.obs_leaves[buffer], self.obs_tree.flatten(reply["obs"]), strict=True):
            out[lo:hi] = leaf
        for k in PER_ENV:
            self.arrays[k][lo:hi] = reply[k]

    def _command(self, u: int, cmd: int, options: dict[str, Any] | None = None) -> Any:
        """Start ``cmd`` on unit ``u`` with the actions, seeds and mask in ``arrays``; its ref."""
        lo, hi = self.bounds[u], self.bounds[u + 1]
        a = self.arrays
        if cmd == STEP:  # each leaf in the caller's dtype, which the unit's bank passes on
            tree = self.act_tree
            leaves = [a[name][lo:hi].astype(ACTION_DTYPES[a[code][lo]]) for name, code in
                      zip(tree.names("actions"), tree.names("action_dtype"), strict=True)]
            return self._units[u].step.remote(tree.unflatten(leaves))
        seeds = [int(s) if on else None for s, on in zip(a["seeds"][lo:hi], a["seeded"][lo:hi], strict=True)]
        if options is not None and "reset_mask" in options:
            options = {**options, "reset_mask": a["reset_mask"][lo:hi].copy()}
        return self._units[u].reset.remote(seeds, options)

    def _lockstep(self, cmd: int, options: dict[str, Any] | None, buffer: int) -> None:
        if self._pending:
            raise EnvError("the env bank has asynchronous commands in flight; collect them with finished() "
                           "before a lock-step step or reset")
        units = range(len(self._units))
        replies = self._gather([self._command(u, cmd, options) for u in units], units)
        for u, reply in zip(units, replies, strict=True):
            self._take(u, reply, buffer)
        self.events = [event for reply in replies for event in reply["events"]]
        self.last_buffer = buffer

    def step(self, actions: np.ndarray[Any, Any], buffer: int = 0) -> None:
        """Step every env; observations go to ``obs_buffers[buffer]``, the rest to ``arrays``."""
        self._check_open()
        store_actions(self.act_tree, self.arrays, slice(None), actions)
        self._lockstep(STEP, None, buffer)

    def reset(self, seeds: Sequence[int | None] | None = None, options: dict[str, Any] | None = None,
              buffer: int = 0) -> None:
        """Reset every env (those in ``options["reset_mask"]`` if given); ``seeds[i]`` seeds env i."""
        self._check_open()
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
        self._lockstep(RESET, options, buffer)
        self.arrays["seeded"][:] = False

    def call(self, name: str, *args: Any, **kwargs: Any) -> list[Any]:
        """Every env's attribute ``name`` (called with ``args`` and ``kwargs`` if callable), in env order."""
        self._check_open()
        units = range(len(self._units))
        replies = self._gather([unit.call.remote(name, args, kwargs) for unit in self._units], units)
        return [x for reply in replies for x in reply]

    def set_attr(self, name: str, values: Sequence[Any]) -> None:
        """Set attribute ``name`` of env i to ``values[i]``."""
        self._check_open()
        if len(values) != self.num_envs:
            raise EnvError(f"set_attr({name!r}) got {len(values)} values for {self.num_envs} envs")
        b = self.bounds
        self._gather([unit.set_attr.remote(name, list(values[b[u]:b[u + 1]])) for u, unit in
                      enumerate(self._units)], range(len(self._units)))

    # -- one slice at a time (make_async) -------------------------------------------------------------------
    def start(self, cmd: int, slices: Sequence[int], payload: Any = None) -> None:
        """Start ``cmd`` (STEP or RESET) on ``slices``; collect them with ``finished``. Observations go to
        ``obs_buffers[0]``."""
        self._check_open()
        busy = [s for s in slices if s in self._pending]
        if busy:
            raise EnvError(f"slice {busy[0]} of the env bank is still busy with its last command; collect it "
                           "with finished() first")
        self.last_buffer = 0
        for s in slices:
            self._pending[s] = self._command(s, cmd, payload)

    @property
    def running(self) -> bool:
        return bool(self._pending)

    def finished(self, wait: bool = True) -> list[int]:
        """The slices whose started command finished since the last call, in slice order; with ``wait``,
        blocks until there is at least one (if any is running)."""
        if not self._pending:
            return []
        ray = require_ray()
        refs = list(self._pending.values())
        ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
        if not ready and wait:
            ready, _ = ray.wait(refs, num_returns=1)
        done = sorted(s for s, ref in self._pending.items() if ref in ready)
        replies = self._gather([self._pending.pop(s) for s in done], done)
        for s, reply in zip(done, replies, strict=True):
            self._take(s, reply, 0)
        return done

    # -- lifetime -------------------------------------------------------------------------------------------
    def _check_open(self) -> None:
        if not self._units:
            raise EnvError("the env bank is closed")

    def close(self) -> None:
        """Close every unit's bank and end its actor (killing it if it does not end), remove what a killed
        unit left in shared memory, and close a Ray connection opened here. Safe to repeat."""
        ray = require_ray()
        units, self._units, self._pending = self._units, [], {}
        if units:
            with contextlib.suppress(Exception):
                ray.wait([u.close.remote() for u in units], num_returns=len(units), timeout=CLOSE_TIMEOUT_S)
            for unit in units:
                with contextlib.suppress(Exception):
                    ray.kill(unit)
            tasks = []
            for node, pids, names in self._leftovers:
                with contextlib.suppress(Exception):
                    task = clean_up_after(node, pids, names)
                    tasks += [task] if task is not None else []
            with contextlib.suppress(Exception):
                ray.wait(tasks, num_returns=len(tasks), timeout=CLOSE_TIMEOUT_S)
        self._leftovers = []
        if self._connection is not None:
            self._connection.close()
            self._connection = None
