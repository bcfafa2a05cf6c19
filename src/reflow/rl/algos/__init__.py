"""The agents: PPO, DQN and SAC, each one file that composes ``reflow.components``.

``AGENTS`` maps an algorithm name to its agent class and config class; ``make_agent`` builds one for an
env's spaces.
"""

from __future__ import annotations

from typing import Any

from reflow.components import Agent, Spec
from reflow.errors import TrainConfigError
from reflow.rl.algos.dqn import DQNAgent, DQNConfig
from reflow.rl.algos.ppo import PPOAgent, PPOConfig
from reflow.rl.algos.sac import SACAgent, SACConfig

AGENTS: dict[str, tuple[type[Agent], type[Any]]] = {
    "ppo": (PPOAgent, PPOConfig),
    "dqn": (DQNAgent, DQNConfig),
    "sac": (SACAgent, SACConfig),
}


def make_agent(
    algo: str,
    obs: Spec,
    action: Spec,
    config: Any,
    num_envs: int,
    seed: int,
    learner: bool,
    backend: str = "eager",
) -> Agent:
    """A built agent of ``algo`` for these spaces (the staged build raises ComponentError on bad input)."""
    if algo not in AGENTS:
        raise TrainConfigError(f"unknown algo {algo!r}; choose one of {', '.join(AGENTS)}")
    cls, _ = AGENTS[algo]
    agent = cls(obs, action, config, num_envs, seed, learner)
    agent.build(backend)
    return agent


__all__ = ["AGENTS", "DQNAgent", "DQNConfig", "PPOAgent", "PPOConfig", "SACAgent", "SACConfig", "make_agent"]
