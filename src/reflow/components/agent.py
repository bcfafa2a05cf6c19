"""An agent is the root component of an algorithm, with the interface the training program drives.

The training program (``reflow.rl.train``) runs an agent in two roles, each an instance of the same class:
the *policy* role, made with ``learner=False``, holds only what acting needs (torsos, heads, the observation
normaliser); the *learner* role holds everything (memories, losses, optimizers, target networks). The
policy calls ``act``; the learner calls ``observe`` with each step's transition, and when that returns True
(the weights changed) publishes ``policy_state()``, which the policy loads. Checkpoints hold the policy
state and the agent's config, and ``reflow eval`` rebuilds a policy-role agent from them.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, ClassVar

import numpy as np
import torch

from reflow.components.build import Built, build
from reflow.components.component import Component, api
from reflow.components.memories import NStep, ReplayBuffer
from reflow.components.spaces import Spec
from reflow.errors import ComponentError
from reflow.graph import Graph


@dataclass(frozen=True)
class Act:
    """What the policy did for one batch of observations: ``obs`` as the networks saw them, ``actions`` as
    the algorithm keeps them, ``env_actions`` as the envs get them, and algorithm-specific ``extras``."""

    obs: torch.Tensor
    actions: torch.Tensor
    env_actions: np.ndarray[Any, Any]
    extras: Mapping[str, torch.Tensor]


@dataclass(frozen=True)
class PolicyTensors:
    """An agent's policy variables as names (``policy_state``'s keys) and tensors in one order: the live
    variables (``Agent.policy_vars``) or a copy of them (``Agent.policy_snapshot``)."""

    names: tuple[str, ...]
    tensors: tuple[torch.Tensor, ...]

    def state_dict(self) -> dict[str, torch.Tensor]:
        """As ``Agent.policy_state`` gives it."""
        return dict(zip(self.names, self.tensors, strict=True))


@dataclass(frozen=True)
class Transition:
    """The envs' answer to an ``Act``: rewards and flags, the true next observations (the final one where an
    episode ended) and the observations the policy sees next (after any reset)."""

    rewards: torch.Tensor
    terminations: torch.Tensor
    truncations: torch.Tensor
    next_obs: torch.Tensor
    obs: torch.Tensor


def obs_tensor(obs: Any, spec: Spec) -> torch.Tensor:
    """A batch of raw observations as a tensor: frames stay uint8, everything else becomes float32."""
    dtype = np.uint8 if spec.dtype == "uint8" else np.float32
    return torch.from_numpy(np.asarray(obs, dtype=dtype).reshape(-1, *spec.shape))


class Agent(Component):
    """Base of the agents in ``reflow.rl.algos``. Subclasses add their components in ``__init__`` (learner
    components only when ``learner``), name the ones acting needs in ``POLICY``, and implement
    ``build_inputs``, ``act`` and ``observe``."""

    algo: ClassVar[str]
    POLICY: ClassVar[tuple[str, ...]]

    def __init__(self, obs: Spec, action: Spec, config: Any, num_envs: int, seed: int, learner: bool) -> None:
        super().__init__(self.algo)
        if obs.dtype != "uint8":  # as obs_tensor makes them: MuJoCo's float64 observations become float32
            obs = replace(obs, dtype="float32")
        self.obs_spec, self.action_spec, self.config = obs, action, config
        self.num_envs, self.agent_seed, self.learner = num_envs, seed, learner
        self.progress = 0.0  # fraction of the training budget used, for schedules
        self.built: Built | None = None
        self._policy_vars: tuple[Built | None, PolicyTensors] | None = None  # (of which build, the vars)
        self.action_bounds: tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]] | None = None
        if action.low is not None and action.high is not None:  # float32, as torch.tensor(low) gives them
            self.action_bounds = (
                np.asarray(action.low, dtype=np.float32).reshape(action.shape),
                np.asarray(action.high, dtype=np.float32).reshape(action.shape),
            )

    def build(self, backend: str = "eager") -> Built:
        """Run the staged build (``reflow.components.build``) on this agent's API inputs."""
        self.built = build(self, self.build_inputs(), self.agent_seed, backend)
        return self.built

    def graph(self) -> Graph:
        """The logical graph of the last build (``reflow graph`` draws it)."""
        if self.built is None:
            raise ComponentError(f"agent {self.path!r} is not built yet; call build() first")
        return self.built.graph

    @abstractmethod
    def build_inputs(self) -> dict[str, dict[str, Any]]:
        """API method -> input name -> Spec (or a plain value), for the role this agent plays."""

    @abstractmethod
    def act(self, obs: torch.Tensor, gen: torch.Generator, explore: bool = True) -> Act:
        """Choose actions for a batch of observations (``explore=False``: the greedy policy)."""

    @abstractmethod
    def observe(self, act: Act, tr: Transition) -> bool:
        """Learner role: take in one step of every env; True if the policy's weights changed."""

    def env_actions(self, actions: torch.Tensor) -> np.ndarray[Any, Any]:
        """Actions as the env takes them: clipped into a box's bounds (in numpy: one call, not three)."""
        a: np.ndarray[Any, Any] = actions.detach().numpy()
        if self.action_bounds is not None:
            a = np.clip(a, *self.action_bounds)
        return a

    def _walk_policy(self) -> dict[str, torch.Tensor]:
        """The variables of the components acting needs, walked now (detached views, not copies)."""
        return {
            f"{name}/{k}": v
            for name in self.POLICY
            for k, v in self.components[name].state_dict().items()
        }

    def policy_state(self) -> dict[str, torch.Tensor]:
        """A snapshot (copies) of the variables of the components acting needs."""
        return {k: v.clone() for k, v in self._walk_policy().items()}

    def policy_vars(self) -> PolicyTensors:
        """The live variables of ``policy_state`` (same names, same order), collected once: variables are
        made at build time only and changed in place afterwards, so the list stays valid until the next
        build. Publishing weights after every update goes through these instead of two state-dict walks."""
        if self._policy_vars is None or self._policy_vars[0] is not self.built:
            state = self._walk_policy()
            self._policy_vars = (self.built, PolicyTensors(tuple(state), tuple(state.values())))
        return self._policy_vars[1]

    def policy_snapshot(self) -> PolicyTensors:
        """A copy of the policy's variables, cheaper than ``policy_state()`` (no module walk, no dict)."""
        live = self.policy_vars()
        return PolicyTensors(live.names, tuple(t.clone() for t in live.tensors))

    def load_policy_snapshot(self, snap: PolicyTensors) -> None:
        """Copy a ``policy_snapshot()`` of an agent of the same structure into this agent's variables."""
        live = self.policy_vars()
        if snap.names != live.names:
            raise ComponentError(
                f"agent {self.path!r}: the snapshot's variables {list(snap.names)[:4]}... are not this "
                f"agent's {list(live.names)[:4]}...; load snapshots of agents with the same config"
            )
        with torch.no_grad():
            for name, mine, theirs in zip(live.names, live.tensors, snap.tensors, strict=True):
                if mine.shape != theirs.shape:
                    raise ComponentError(
                        f"agent {self.path!r}: variable {name!r} has shape {tuple(mine.shape)}, the "
                        f"snapshot's has {tuple(theirs.shape)}"
                    )
                mine.copy_(theirs)

    def load_policy_state(self, state: Mapping[str, torch.Tensor]) -> None:
        for name in self.POLICY:
            prefix = f"{name}/"
            self.components[name].load_state_dict(
                {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
            )


class OffPolicyAgent(Agent):
    """An agent that learns from replay (DQN, SAC): its learner role has an ``nstep`` component and a
    ``memory``, and ``remember`` feeds one step of every env through the first into the second."""

    nstep: NStep
    memory: ReplayBuffer

    def remember_inputs(self, actions: Spec) -> dict[str, Spec]:
        """The build inputs of ``remember``, with actions as the algorithm keeps them."""
        obs, flag = self.obs_spec, Spec((), "bool")
        return {
            "obs": obs,
            "actions": actions,
            "rewards": Spec(()),
            "next_obs": obs,
            "terminations": flag,
            "dones": flag,
        }

    @api
    def remember(
        self,
        obs: torch.Tensor,
        actions: torch.Tensor,
        rewards: torch.Tensor,
        next_obs: torch.Tensor,
        terminations: torch.Tensor,
        dones: torch.Tensor,
    ) -> None:
        self.memory.insert(*self.nstep.push(obs, actions, rewards, next_obs, terminations, dones))
