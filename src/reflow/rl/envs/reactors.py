"""The env bank and batched inference as reactors: a rollout is a two-reactor dataflow loop.

``EnvReactor`` owns a vector env: at startup it resets and sends the batch of observations; each time a batch
of actions arrives it steps every env once and sends the next observations. ``PolicyReactor`` is the policy
reactor of the design: at each tag it gathers the observations of all envs (one array), runs one batched
forward pass and scatters the actions (one array, one action per env) back. ``Rollout`` connects the two; the
connection from policy to env is delayed by one microstep, which breaks the causality loop, so step k of the
envs happens at microstep 2k of tag 0 and a rerun replays the same tags with the same values.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from reflow.reactor import Reactor, reaction
from reflow.rl.envs.inference import BatchedPolicy
from reflow.rl.envs.vector import BankVectorEnv


class EnvReactor(Reactor):
    """Steps ``env`` once per batch of actions, ``steps`` times, and keeps the reward sum per env."""

    def __init__(self, env: BankVectorEnv, steps: int, name: str = "envs") -> None:
        super().__init__(name)
        self.env = env
        self.steps = steps
        self.actions = self.input("actions", np.ndarray)
        self.obs = self.output("obs", np.ndarray)
        self.done_steps = 0
        self.reward_sum = np.zeros(env.num_envs, dtype=np.float64)
        self.episode_returns: list[float] = []

    @reaction(triggers="startup", effects="obs")
    def start(self) -> None:
        obs, _ = self.env.reset()
        self.obs.set(obs)

    @reaction(triggers="actions", effects="obs")
    def step(self) -> None:
        obs, rewards, _, _, infos = self.env.step(self.actions.get())
        self.reward_sum += rewards
        if "episode" in infos:
            self.episode_returns += infos["episode"]["r"][infos["_episode"]].tolist()
        self.done_steps += 1
        if self.done_steps == self.steps:
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

    def __init__(self, env: BankVectorEnv, policy: BatchedPolicy, steps: int) -> None:
        super().__init__("rollout")
        self.envs = self.add(EnvReactor(env, steps))
        self.policy = self.add(PolicyReactor(policy))
        self.connect(self.envs.obs, self.policy.obs)
        self.connect(self.policy.actions, self.envs.actions, after=0)

    def summary(self) -> dict[str, Any]:
        return {"steps": self.envs.done_steps, "reward_sum": self.envs.reward_sum.tolist(),
                "episode_returns": self.envs.episode_returns}
