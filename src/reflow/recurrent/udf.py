"""User-defined ops: env banks, loggers, and any Python function, as nodes of the dependence graph.

A user-defined op is called with the values of its inputs at a point (or, ``batched`` over some dimensions,
for all values of those dimensions at once: an env bank steps all its envs in one call) and returns its
outputs. Ops that share a *resource* (an env bank's ``reset`` and ``step``) are called in the lexicographic
order of their points, since the resource has state; resources are opened for a run and closed after it
(``open(run)`` / ``close()``), on every exit path.

``EnvBank`` wraps reflow's env bank (``reflow.rl.make_vec``, envs in worker processes over shared memory):

    env = EnvBank(ctx, "CartPole-v1", domain=(b, i, t))
    obs[b, i, 0] = env.reset()                          # a fresh episode per env at every iteration
    obs[b, i, t + 1], r, term, trunc = env.step(act)

Iteration i resets env k with seed ``seed + i * B + k``, so every episode is reproducible on its own. With
``env.reset(once=True)`` the envs are reset once and keep running across iterations (CleanRL's rollouts;
use ``autoreset="same_step"`` so the step that ends an episode returns the next episode's first
observation). ``env.episode_return`` is, at each step, the return of the episode that step ended (else 0).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from reflow.errors import RecurrentError
from reflow.recurrent.context import Context, Out
from reflow.recurrent.tensor import RecurrentTensor


@dataclass
class Run:
    """What a run gives its resources: the dimension sizes, and the list log records go to."""

    sizes: Mapping[str, int]
    logs: list[dict[str, Any]] = field(default_factory=list)


def udf(ctx: Context, fn: Callable[..., Any], inputs: Sequence[RecurrentTensor], domain: Sequence[Any],
        outs: Sequence[tuple[str, Sequence[int], torch.dtype]], *, batched: Sequence[Any] = (),
        resource: str | None = None, side_effect: bool = False, name: str = "udf") -> list[RecurrentTensor]:
    """A node calling ``fn(point, *inputs) -> outputs`` at every point of ``domain`` (``point`` maps the
    dimensions that are not ``batched`` to their values; batched inputs/outputs have one leading axis per
    batched dimension)."""
    dom = ctx.domain_of(domain)
    for x in inputs:
        missing = [d for d in x.domain if d not in dom]
        if missing:
            raise RecurrentError(f"{name}: input {x.label} varies over {missing}, which {name}'s domain "
                                 f"({', '.join(dom)}) lacks")
    node = ctx.add("udf", inputs, dom, [Out(p, tuple(s), dt) for p, s, dt in outs], name, fn=fn,
                   batched=ctx.domain_of(batched), resource=resource, side_effect=side_effect, impure=True)
    return [ctx.tensor(node, p) for p, _, _ in outs]


class Logger:
    """Log records as a resource: ``log(i=..., **scalars)`` appends one record per point to the run's logs."""

    def __init__(self) -> None:
        self.run: Run | None = None

    def open(self, run: Run) -> None:
        self.run = run

    def close(self) -> None:
        self.run = None

    def write(self, names: Sequence[str], point: Mapping[str, int], *values: torch.Tensor) -> torch.Tensor:
        assert self.run is not None
        record: dict[str, Any] = dict(point)
        for n, v in zip(names, values, strict=True):
            record[n] = float(v) if v.numel() == 1 else v.detach().clone()
        self.run.logs.append(record)
        return torch.zeros((), dtype=torch.bool)


def log(ctx: Context, domain: Sequence[Any] = (), **values: RecurrentTensor) -> RecurrentTensor:
    """Log ``values`` (scalars, or tensors) at every point of ``domain``; records go to ``Result.logs``."""
    logger = ctx.resources.setdefault("log", Logger())
    names = list(values)
    dom = ctx.domain_of(domain) or ctx.order(d for v in values.values() for d in v.domain)
    return udf(ctx, lambda p, *xs: logger.write(names, p, *xs), list(values.values()), dom,
               [("out", (), torch.bool)], resource="log", side_effect=True, name="log")[0]


class EnvBank:
    """A gymnasium env replicated over the batch dimension, stepped by ``reflow.rl.make_vec``."""

    def __init__(self, ctx: Context, env_id: str, domain: Sequence[Any], num_workers: int = 1, seed: int = 0,
                 name: str | None = None, autoreset: str = "next_step", **env_kwargs: Any) -> None:
        import gymnasium as gym

        from reflow.rl.envs.spec import EnvSpec, make_env

        dom = ctx.domain_of(domain)
        if len(dom) != 3:
            raise RecurrentError(f"EnvBank {env_id}: domain must be (batch, iteration, time) dimensions, "
                                 f"got {dom}")
        self.ctx, self.env_id, self.num_workers, self.seed = ctx, env_id, num_workers, seed
        self.b, self.i, self.t = (str(d) for d in domain)
        self.env_kwargs = env_kwargs
        self.autoreset = autoreset
        self.episode_return: RecurrentTensor | None = None
        probe = make_env(EnvSpec(env_id, dict(env_kwargs)), 0)
        try:
            self.obs_space, self.act_space = probe.observation_space, probe.action_space
        finally:
            probe.close()
        self.obs_shape = tuple(self.obs_space.shape or ())
        self.act_shape = tuple(self.act_space.shape or ())
        self.discrete = isinstance(self.act_space, gym.spaces.Discrete)
        self.num_actions = int(self.act_space.n) if self.discrete else 0  # type: ignore[attr-defined]
        self.name = name or ctx.fresh("env")
        self.vec: Any = None
        self.run: Run | None = None
        ctx.resources[self.name] = self

    # -- resource ----------------------------------------------------------------------------------------
    def open(self, run: Run) -> None:
        from gymnasium.vector import AutoresetMode

        from reflow.rl.envs.vector import make_vec

        self.run = run
        self.vec = make_vec(self.env_id, run.sizes[self.b], num_workers=self.num_workers, seed=self.seed,
                            autoreset_mode=AutoresetMode[self.autoreset.upper()], **self.env_kwargs)

    def close(self) -> None:
        if self.vec is not None:
            self.vec.close()
        self.vec = None

    # -- ops ---------------------------------------------------------------------------------------------
    def _obs(self, obs: Any) -> torch.Tensor:
        t = torch.from_numpy(np.asarray(obs))
        return t.to(self.ctx.dtype) if t.dtype.is_floating_point and t.dtype != self.ctx.dtype else t

    def _reset(self, point: Mapping[str, int]) -> torch.Tensor:
        assert self.vec is not None and self.run is not None
        obs, _ = self.vec.reset(seed=self.seed + point.get(self.i, 0) * self.run.sizes[self.b])
        return self._obs(obs)

    def _step(self, point: Mapping[str, int], act: torch.Tensor) -> tuple[torch.Tensor, ...]:
        assert self.vec is not None
        obs, r, term, trunc, info = self.vec.step(act.numpy())
        ep = info.get("episode")
        ret = torch.from_numpy(ep["r"] if ep is not None else np.zeros(len(r))).to(self.ctx.dtype)
        return (self._obs(obs), torch.from_numpy(r).to(self.ctx.dtype), torch.from_numpy(term),
                torch.from_numpy(trunc), ret)

    def _obs_dtype(self) -> torch.dtype:
        if np.issubdtype(self.obs_space.dtype, np.floating):
            return self.ctx.dtype
        return torch.from_numpy(np.zeros((), self.obs_space.dtype)).dtype

    def reset(self, once: bool = False) -> RecurrentTensor:
        """The first observation of each env's episode: at every iteration, or ``once`` at the start."""
        dom = (self.b,) if once else (self.b, self.i)
        return udf(self.ctx, self._reset, [], dom, [("out", self.obs_shape, self._obs_dtype())],
                   batched=(self.b,), resource=self.name, side_effect=True, name=f"{self.name}_reset")[0]

    def step(self, action: RecurrentTensor) -> tuple[RecurrentTensor, ...]:
        """``(next_obs, reward, terminated, truncated)`` after taking ``action`` at every step; the return of
        each episode a step ends is in ``env.episode_return`` (0 where none ended)."""
        want = torch.int64 if self.discrete else self.ctx.dtype
        if action.dtype != want:
            action = action.cast(want)
        f = self.ctx.dtype
        outs = udf(self.ctx, self._step, [action], (self.b, self.i, self.t),
                   [("obs", self.obs_shape, self._obs_dtype()), ("reward", (), f),
                    ("terminated", (), torch.bool), ("truncated", (), torch.bool), ("episode_return", (), f)],
                   batched=(self.b,), resource=self.name, side_effect=True, name=f"{self.name}_step")
        self.episode_return = outs[4]
        return tuple(outs[:4])
