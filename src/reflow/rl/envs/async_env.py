"""``make_async``: an asynchronous env bank (EnvPool's API): ``recv`` returns the envs that are ready first.

Why. A lock-step vector env (``make_vec``) waits at every step for the slowest of its processes; with every
core busy, one late process (the OS, a slow reset, an Atari frame that costs more) stalls all the others.
Here ``num_workers`` worker processes each step a slice of the envs as soon as they have its actions, and
the caller, which steps none itself (unlike ``make_vec``'s), only hands out actions and takes whichever
slices are done, so it never keeps a finished slice waiting for the next:

    with make_async("ALE/Pong-v5", num_envs=64, num_workers=16, batch_size=16) as env:
        env.async_reset()
        while training:
            obs, rewards, terminations, truncations, info = env.recv()
            env.send(policy(obs), info["env_id"])

Rules (tested in ``tests/rl/envs/test_envbank_async.py``):

* ``recv`` returns whole slices (the envs a process steps together; ``env.slices`` lists them), in the
  order they finished, as many as it takes to hold at least ``batch_size`` envs (default: one slice),
  waiting for them if needed; fewer only when no other env is stepping (the others all wait for actions).
  First finished, first returned: no slice waits behind one that happens to be quicker.
  Returned arrays are copies: they stay valid after ``send``. ``info["env_id"]`` says which envs they are.
* ``send(actions, env_id)`` takes actions for envs exactly as some ``recv`` returned them (whole slices, in
  order, not yet sent); those slices start stepping at once. Anything else is an ``EnvError`` saying why.
* Auto-reset is gymnasium's NEXT_STEP: an env that ended is reset by its next step, whose action is ignored
  and whose reward is 0. Episode statistics are in ``info["episode"]`` / ``info["_episode"]`` and the
  ``return_queue`` family, as for ``make_vec``.
* Determinism: *which* envs come back together depends on timing, but each env's own trajectory does not.
  Env i is seeded with ``seed + i`` and steps on the actions sent for it, so the same actions per env give the
  same observations, rewards and flags per env for any ``num_workers``, ``slices_per_worker`` and
  ``batch_size`` (as ``make_vec``).

With ``slices_per_worker=k`` each worker process steps k slices, one at a time, in the order their actions
arrive: while the caller takes one slice's results and computes its actions, the worker steps another, so it
does not sit idle through the caller's turnaround. That pays when the caller's work per slice is a good part
of a slice's stepping time (cheap envs such as CartPole) and there is a core per worker and one for the
caller; each extra slice adds its own fixed cost per step.
"""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType
from typing import Any

import numpy as np

from reflow.errors import EnvError
from reflow.rl.envs.bank import EnvBank
from reflow.rl.envs.episodes import EpisodeLog
from reflow.rl.envs.ray_bank import RayEnvBank, check_backend
from reflow.rl.envs.spec import EnvSpec, store_actions
from reflow.rl.envs.worker import RESET, STEP


class AsyncBankEnv(EpisodeLog):
    """Envs stepped asynchronously, a slice per process; build it with :func:`make_async`."""

    def __init__(self, specs: list[EnvSpec], num_workers: int = 1, seed: int = 0,
                 batch_size: int | None = None, slices_per_worker: int = 1, backend: str = "local",
                 ray_address: str | None = None) -> None:
        check_backend(backend)
        self.bank: EnvBank | RayEnvBank
        if backend == "ray":  # a Ray actor per slice, on the nodes of a cluster (ray_bank.py)
            if slices_per_worker != 1:
                raise EnvError("slices_per_worker is for the local backend; with backend='ray' every slice "
                               "is an actor of its own")
            self.bank = RayEnvBank(specs, num_workers, per_node=False, address=ray_address)
        else:
            self.bank = EnvBank(specs, num_workers=num_workers, seed=seed, caller_steps=False,
                                slices_per_worker=slices_per_worker)
        self.num_envs = self.bank.num_envs
        bounds = self.bank.bounds
        self.slices = [range(bounds[s], bounds[s + 1]) for s in range(self.bank.num_slices)]
        smallest = min(len(r) for r in self.slices)
        self.batch_size = smallest if batch_size is None else batch_size
        if not 1 <= self.batch_size <= self.num_envs:
            self.bank.close()
            raise EnvError(f"batch_size must be between 1 and num_envs={self.num_envs}, got {batch_size}")
        self.single_observation_space = self.bank.single_observation_space
        self.single_action_space = self.bank.single_action_space
        self._slice_of = [s for s, r in enumerate(self.slices) for _ in r]  # env -> its slice
        self._ids = [list(r) for r in self.slices]  # each slice's env ids, to check what send gets
        self._seed: int | None = seed
        self._ready: list[int] = []  # slices finished and not yet returned by recv, first finished first
        self._waiting: set[int] = set()  # slices returned by recv, waiting for their actions
        self._init_episode_log()

    def async_reset(self, seed: int | None = None) -> None:
        """Reset every env (env i seeded with ``seed + i``; the first reset uses make_async's seed); the
        observations come back through ``recv``. Waits for slices still stepping, and drops their results."""
        if seed is None:
            seed, self._seed = self._seed, None
        while self.bank.finished(wait=True):
            pass
        self.bank.arrays["seeded"][:] = seed is not None
        if seed is not None:
            self.bank.arrays["seeds"][:] = seed + np.arange(self.num_envs)
        self._ready, self._waiting = [], set()
        self.bank.start(RESET, range(len(self.slices)))

    def recv(self) -> tuple[Any, Any, Any, Any, dict[str, Any]]:
        """The next ready slices, at least ``batch_size`` envs: (obs, rewards, terminations, truncations,
        info); ``info["env_id"]`` names the envs."""
        need = self.batch_size
        while sum(len(self.slices[s]) for s in self._ready) < need:
            if not self.bank.running:
                if self._ready:
                    break  # fewer are left than a batch (the others wait for actions): take those
                raise EnvError("recv: no env is stepping or ready; send the actions of the envs recv "
                               "returned (or async_reset) first")
            self._ready += self.bank.finished(wait=True)
        taken: list[int] = []  # the first finished, as many as make a batch
        count = 0
        for s in self._ready:
            taken.append(s)
            count += len(self.slices[s])
            if count >= need:
                break
        self._ready = self._ready[len(taken):]
        self._waiting.update(taken)
        rows = self._rows(taken)
        ids = np.arange(rows.start, rows.stop) if isinstance(rows, slice) else rows

        def take(array: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
            return array[rows].copy() if isinstance(rows, slice) else array[rows]  # a copy either way

        a = self.bank.arrays
        terms, truncs, dones = take(a["terminated"]), take(a["truncated"]), take(a["done"])
        info: dict[str, Any] = {"env_id": ids}
        if dones.any():
            self._record(info, take(a["ended"]), take(a["episode_return"]), take(a["episode_length"]),
                         take(a["episode_time"]))
        obs = self.bank.obs_tree.unflatten([take(leaf) for leaf in self.bank.obs_leaves[0]])
        return obs, take(a["rewards"]), terms, truncs, info

    def send(self, actions: Any, env_id: Any) -> None:
        """Start stepping the envs ``env_id`` (as a ``recv`` returned them) with ``actions``."""
        ids = np.asarray(env_id).reshape(-1)
        tree = self.bank.act_tree
        leaves = [np.asarray(leaf) for leaf in tree.flatten(actions)]
        for leaf, at in zip(leaves, tree.leaves, strict=True):
            if leaf.shape[:1] != ids.shape:
                got = f"{len(leaf)} {at.where('actions')}" if leaf.ndim else f"a scalar {at.where('actions')}"
                raise EnvError(f"send got {got} for {len(ids)} envs")
        slices = self._slices_of(ids)
        store_actions(tree, self.bank.arrays, self._rows(slices), tree.unflatten(leaves))
        self._waiting.difference_update(slices)
        self._ready += self.bank.finished(wait=False)  # first finished, first returned
        self.bank.start(STEP, slices)

    def step(self, actions: Any, env_id: Any) -> tuple[Any, Any, Any, Any, dict[str, Any]]:
        """``send`` then ``recv``."""
        self.send(actions, env_id)
        return self.recv()

    def _rows(self, slices: list[int]) -> slice | np.ndarray[Any, Any]:
        """The bank rows of ``slices`` in order: a slice when they follow one another (basic indexing is
        cheaper), else the env ids."""
        if slices == list(range(slices[0], slices[0] + len(slices))):
            return slice(self.slices[slices[0]].start, self.slices[slices[-1]].stop)
        return np.concatenate([np.arange(self.slices[s].start, self.slices[s].stop) for s in slices])

    def _slices_of(self, ids: np.ndarray[Any, Any]) -> list[int]:
        """The slices ``ids`` spells out, whole and in order, each waiting for actions; else EnvError."""
        wanted = ids.tolist()  # plain ints: comparing lists is cheaper than numpy calls per slice
        slices, pos = [], 0
        while pos < len(wanted):
            i = int(wanted[pos])
            if not 0 <= i < self.num_envs:
                raise EnvError(f"send got env id {i}; this bank has envs 0..{self.num_envs - 1}")
            s = self._slice_of[i]
            r = self.slices[s]
            if wanted[pos:pos + len(r)] != self._ids[s]:
                raise EnvError(f"send got envs {wanted[pos:pos + len(r)]} where slice {s} (envs "
                               f"{r.start}..{r.stop - 1}) was expected whole: pass info['env_id'] as recv "
                               "returned it")
            if s not in self._waiting or s in slices:
                raise EnvError(f"envs {r.start}..{r.stop - 1} are not waiting for actions (already sent, "
                               "or not yet returned by recv): send each recv's envs once")
            slices.append(s)
            pos += len(r)
        return slices

    def close(self) -> None:
        self.bank.close()

    def __enter__(self) -> AsyncBankEnv:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def collect(env: AsyncBankEnv) -> None:
    """Receive until every env has come back (after ``async_reset``), dropping the results: then every env
    waits for actions, as ``step_each`` wants them."""
    back = 0
    while back < env.num_envs:
        back += len(env.recv()[4]["env_id"])


def step_each(env: AsyncBankEnv, actions: np.ndarray[Any, Any], rewards: np.ndarray[Any, Any] | None = None,
              progress: Callable[[int], object] | None = None) -> None:
    """Step every env ``len(actions)`` times, env i's t-th action being ``actions[t, i]``, serving slices in
    the order they come back. Every env must be waiting for actions (``collect``), and is again at the end.
    Each step's reward goes to ``rewards[t, i]`` if given; ``progress(k)`` hears of every k results."""
    steps, n = len(actions), env.num_envs
    if not steps:
        return
    made = np.ones(n, np.int64)  # steps sent to each env
    env.send(actions[0], np.arange(n))
    done = 0
    while done < n:
        _, rew, _, _, info = env.recv()
        ids = info["env_id"]
        if rewards is not None:
            rewards[made[ids] - 1, ids] = rew
        if progress is not None:
            progress(len(ids))
        more = ids[made[ids] < steps]  # whole slices: a slice's envs are always at one step
        if len(more):
            env.send(actions[made[more], more], more)
            made[more] += 1
        done += len(ids) - len(more)


def make_async(env_id: str, num_envs: int, num_workers: int = 1, seed: int = 0,
               batch_size: int | None = None, slices_per_worker: int = 1, backend: str = "local",
               ray_address: str | None = None, **env_kwargs: Any) -> AsyncBankEnv:
    """``num_envs`` copies of gymnasium env ``env_id`` stepped asynchronously by ``num_workers`` worker
    processes, each stepping ``slices_per_worker`` slices (the caller steps none; see the module
    docstring); ``backend="ray"`` makes each slice a Ray actor on the nodes of a cluster (``make_vec``
    says which); other keyword arguments go to ``gymnasium.make``."""
    if num_envs < 1:
        raise EnvError(f"make_async({env_id!r}) needs num_envs >= 1, got {num_envs}")
    specs = [EnvSpec(env_id, dict(env_kwargs)) for _ in range(num_envs)]
    return AsyncBankEnv(specs, num_workers=num_workers, seed=seed, batch_size=batch_size,
                        slices_per_worker=slices_per_worker, backend=backend, ray_address=ray_address)


__all__ = ["AsyncBankEnv", "collect", "make_async", "step_each"]
