"""The env bank and batched inference as reactors: a rollout is a two-reactor dataflow loop.

``EnvReactor`` owns a vector env: at startup it resets and sends the batch of observations; each time a batch
of actions arrives it steps every env once and sends the next observations (on ``obs``) and the whole step
result (on ``step``, for a learner). ``PolicyReactor`` is the policy reactor of the design: at each tag it
gathers the observations of all envs (one array), runs one batched forward pass and scatters the actions (one
array, one action per env) back. ``Rollout`` connects the two; the connection from policy to env is delayed
by one microstep, which breaks the causality loop, so step k of the envs happens at microstep k of tag 0 and
a rerun replays the same tags with the same values. The training program (``reflow.rl.train``) reuses
``EnvReactor`` with a learner attached.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from gymnasium.spaces import Space

from reflow.reactor import Reactor, reaction
from reflow.rl.envs.inference import BatchedPolicy


class VecEnv(Protocol):
    """What ``EnvReactor`` needs of a vector env: gymnasium's ``VectorEnv`` (``make_vec``) or any look-alike,
    such as a set of remote env actors stepped in lock step."""

    @property
    def num_envs(self) -> int: ...

    @property
    def single_observation_space(self) -> Space[Any]: ...

    @property
    def single_action_space(self) -> Space[Any]: ...

    def reset(self, *, seed: int | None = None) -> tuple[Any, dict[str, Any]]: ...

    def step(self, actions: Any) -> tuple[Any, Any, Any, Any, dict[str, Any]]: ...


@dataclass(frozen=True)
class EnvStep:
    """One step of every env: the next observations, rewards, termination and truncation flags, infos."""

    obs: np.ndarray[Any, Any]
    rewards: np.ndarray[Any, Any]
    terminations: np.ndarray[Any, Any]
    truncations: np.ndarray[Any, Any]
    infos: dict[str, Any]


class EnvReactor(Reactor):
    """Steps ``env`` once per batch of actions, ``steps`` times (None: until the program stops), and keeps
    the reward sum per env. ``seed`` is passed to the first ``reset`` (None: the env's own seeding).
    ``stop_when()``, if given, is asked after each step; True ends the program with that step (Ctrl-C)."""

    def __init__(self, env: VecEnv, steps: int | None, name: str = "envs", seed: int | None = None,
                 stop_when: Callable[[], bool] | None = None) -> None:
        super().__init__(name)
        self.env = env
        self.steps = steps
        self.seed = seed
        self.stop_when = stop_when
        self.actions = self.input("actions", np.ndarray)
        self.obs = self.output("obs", np.ndarray)
        self.step_out = self.output("step", EnvStep)
        self.done_steps = 0
        self.reward_sum = np.zeros(env.num_envs, dtype=np.float64)
        self.episode_returns: list[float] = []

    @reaction(triggers="startup", effects="obs")
    def start(self) -> None:
        obs, _ = self.env.reset() if self.seed is None else self.env.reset(seed=self.seed)
        self.obs.set(obs)

    @reaction(triggers="actions", effects=("obs", "step"))
    def step(self) -> None:
        obs, rewards, terms, truncs, infos = self.env.step(self.actions.get())
        self.reward_sum += rewards
        if "episode" in infos:
            self.episode_returns += infos["episode"]["r"][infos["_episode"]].tolist()
        self.done_steps += 1
        self.step_out.set(EnvStep(obs, rewards, terms, truncs, infos))
        if self.done_steps == self.steps or (self.stop_when is not None and self.stop_when()):
            self.request_stop()
        else:
            self.obs.set(obs)


class PolicyReactor(Reactor):
    """Gathers the observations of all envs at a tag, runs one batched forward pass, scatters the actions."""

    def __init__(self, policy: BatchedPolicy, name: str = "policy") -> None:
        super().__init__(name)
        self.policy = policy
        self.obs = self.input("obs", np.ndarray)
        self.actions = self.output("actions", np.ndarray)

    @reaction(triggers="obs", effects="actions")
    def act(self) -> None:
        self.actions.set(self.policy(self.obs.get()))


class Rollout(Reactor):
    """``steps`` steps of ``env`` driven by ``policy``: the env bank and the policy reactor in a loop."""

    def __init__(self, env: VecEnv, policy: BatchedPolicy, steps: int) -> None:
        super().__init__("rollout")
        self.envs = self.add(EnvReactor(env, steps))
        self.policy = self.add(PolicyReactor(policy))
        self.connect(self.envs.obs, self.policy.obs)
        self.connect(self.policy.actions, self.envs.actions, after=0)

    def summary(self) -> dict[str, Any]:
        return {"steps": self.envs.done_steps, "reward_sum": self.envs.reward_sum.tolist(),
                "episode_returns": self.envs.episode_returns}
