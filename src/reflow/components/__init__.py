"""RLgraph-style components: agents as graphs of logical components with a staged build.

``Component`` (sub-components, variables made at build time, ``@api`` methods) is in ``component``; the
staged build (assemble, infer and check, back end) and the trace that turns an agent into a
``reflow.graph.Graph`` are in ``build``; the standard components are in ``torsos``, ``heads``,
``memories``, ``optim``, ``losses`` and ``preprocess``; ``agent`` is the root component the training
program drives. The agents themselves (PPO, DQN, SAC) are in ``reflow.rl.algos``.
"""

from reflow.components.agent import Act, Agent, Transition
from reflow.components.build import Built, build
from reflow.components.component import Component, api, building
from reflow.components.heads import (
    CategoricalHead,
    DiagGaussianHead,
    QHead,
    SquashedGaussianHead,
    ValueHead,
)
from reflow.components.losses import GAE, DQNLoss, EntropyTuner, PPOLoss, SACLoss
from reflow.components.memories import NStep, PrioritizedReplay, ReplayBuffer
from reflow.components.optim import Optimizer
from reflow.components.preprocess import AtariPreprocess, FrameStack, ObsNormalizer, RewardScaler
from reflow.components.spaces import Spec, from_space
from reflow.components.torsos import MLP, NatureCNN

__all__ = [
    "GAE",
    "MLP",
    "Act",
    "Agent",
    "AtariPreprocess",
    "Built",
    "CategoricalHead",
    "Component",
    "DQNLoss",
    "DiagGaussianHead",
    "EntropyTuner",
    "FrameStack",
    "NStep",
    "NatureCNN",
    "ObsNormalizer",
    "Optimizer",
    "PPOLoss",
    "PrioritizedReplay",
    "QHead",
    "ReplayBuffer",
    "RewardScaler",
    "SACLoss",
    "Spec",
    "SquashedGaussianHead",
    "Transition",
    "ValueHead",
    "api",
    "build",
    "building",
    "from_space",
]
