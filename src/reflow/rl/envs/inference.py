"""Batched inference: gather the observations of many envs or agents, one forward pass, scatter the actions.

Policy. On a CPU a small policy network costs mostly fixed overhead per call (Python, dispatch, allocation),
not arithmetic, so running one forward pass over a batch of 64 observations costs about as much as one over a
single observation. The env bank already keeps all observations in one array, so a step of inference is: view
that array as a tensor (no copy), run the model once, write the actions into the bank's action array. For
multi-agent envs (PettingZoo's parallel API: dicts keyed by agent name) agents are split into groups, each
with its own policy; every group is batched the same way, in the order the env lists its agents.

Determinism: greedy actions are deterministic; sampled actions draw from a ``torch.Generator`` seeded by the
caller, never from torch's global generator.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch

from reflow.errors import EnvError


class BatchedPolicy:
    """A torch model run once per batch; ``sample=False`` takes the argmax of the model's logits."""

    def __init__(self, model: torch.nn.Module, sample: bool = False, seed: int = 0,
                 head: Callable[[torch.Tensor], torch.Tensor] | None = None) -> None:
        self.model = model.eval()
        self.sample = sample
        self.generator = torch.Generator().manual_seed(seed)
        self.head = head

    def __call__(self, obs: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        """Actions for a batch of observations (first axis = batch)."""
        with torch.inference_mode():
            out = self.model(torch.from_numpy(np.ascontiguousarray(obs, dtype=np.float32)))
            if self.head is not None:
                actions = self.head(out)
            elif self.sample:
                actions = torch.multinomial(torch.softmax(out, dim=-1), 1, generator=self.generator)[:, 0]
            else:
                actions = out.argmax(dim=-1)
        result: np.ndarray[Any, Any] = actions.numpy()
        return result

    def act_into(self, obs: np.ndarray[Any, Any], actions: np.ndarray[Any, Any]) -> None:
        """Gather ``obs``, run one forward pass, scatter into ``actions`` (e.g. a bank's shared array)."""
        actions[...] = self(obs)


class MultiAgentInference:
    """Several policies for a multi-agent env; ``group_of(agent)`` names the policy of each agent."""

    def __init__(self, policies: Mapping[str, BatchedPolicy], group_of: Callable[[str], str]) -> None:
        self.policies = dict(policies)
        self.group_of = group_of

    def groups(self, agents: list[str]) -> dict[str, list[str]]:
        """Agents per group, in the env's agent order (which fixes the batch order, hence determinism)."""
        out: dict[str, list[str]] = {}
        for agent in agents:
            group = self.group_of(agent)
            if group not in self.policies:
                raise EnvError(f"agent {agent!r} maps to group {group!r}, which has no policy; "
                               f"known groups: {sorted(self.policies)}")
            out.setdefault(group, []).append(agent)
        return out

    def act(self, observations: Mapping[str, Any]) -> dict[str, Any]:
        """One batched forward pass per group; returns an action per agent."""
        actions: dict[str, Any] = {}
        for group, agents in self.groups(list(observations)).items():
            batch = np.stack([np.asarray(observations[a]) for a in agents])
            for agent, action in zip(agents, self.policies[group](batch).tolist(), strict=True):
                actions[agent] = action
        return actions
