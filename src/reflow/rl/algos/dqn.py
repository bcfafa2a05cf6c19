"""DQN (Mnih et al. 2015) as a component graph, with its extensions as switches: double Q-learning,
a dueling head, prioritized replay and n-step returns.

Defaults are the RL Zoo's tuned CartPole-v1 hyper-parameters (as Stable-Baselines3 counts them: every
``train_freq`` env steps, ``gradient_steps`` updates; the target network is synced every
``target_update`` env steps; Huber loss, gradients clipped to norm 10); ``reflow.rl.presets`` has others.

    obs ── torso ── q ─┬─ argmax / epsilon-greedy ─────────────────────────▶ actions
    step ── nstep ── memory.insert
    memory.sample ─┬─ torso ── q ───────────────┐
                   ├─ torso ── q (next, online) ─┼─ loss ── optimizer
                   └─ target_torso ── target_q ──┘   └── memory.update_priorities (prioritized)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from reflow.components import (
    DQNLoss,
    NStep,
    Optimizer,
    PrioritizedReplay,
    QHead,
    ReplayBuffer,
    Spec,
    api,
)
from reflow.components.agent import Act, OffPolicyAgent, Transition
from reflow.components.torsos import torso_for


@dataclass(frozen=True)
class DQNConfig:
    """DQN hyper-parameters (RL Zoo's CartPole-v1 set by default); steps are env steps."""

    lr: float = 2.3e-3
    gamma: float = 0.99
    buffer_size: int = 100_000
    batch_size: int = 64
    learning_starts: int = 1000
    train_freq: int = 256
    gradient_steps: int = 128  # -1: as many as env steps since the last training
    target_update: int = 10
    eps_start: float = 1.0
    eps_end: float = 0.04
    eps_fraction: float = 0.16
    hidden: tuple[int, ...] = (256, 256)
    activation: str = "relu"
    double: bool = False
    dueling: bool = False
    prioritized: bool = False
    per_alpha: float = 0.6
    per_beta: float = 0.4
    n_step: int = 1
    huber: bool = True
    max_grad_norm: float = 10.0
    memory_fraction: float = 0.25


def epsilon(progress: float, cfg: DQNConfig) -> float:
    """Linear decay from eps_start to eps_end over the first ``eps_fraction`` of training, then flat."""
    frac = min(1.0, progress / cfg.eps_fraction) if cfg.eps_fraction > 0 else 1.0
    return cfg.eps_start + (cfg.eps_end - cfg.eps_start) * frac


class DQNAgent(OffPolicyAgent):
    algo = "dqn"
    POLICY = ("torso", "q")

    def __init__(
        self, obs: Spec, action: Spec, config: DQNConfig, num_envs: int, seed: int, learner: bool = True
    ) -> None:
        super().__init__(obs, action, config, num_envs, seed, learner)
        c = config
        self.torso = torso_for("torso", obs, c.hidden, c.activation)
        self.q = QHead("q", action, dueling=c.dueling)
        self.add(self.torso, self.q)
        if learner:
            self.target_torso = torso_for("target_torso", obs, c.hidden, c.activation)
            self.target_q = QHead("target_q", action, dueling=c.dueling)
            self.nstep = NStep("nstep", c.n_step, c.gamma)
            min_capacity = max(c.batch_size, min(c.learning_starts, c.buffer_size))
            self.memory = (
                PrioritizedReplay(
                    "memory",
                    c.buffer_size,
                    c.per_alpha,
                    min_capacity=min_capacity,
                    memory_fraction=c.memory_fraction,
                )
                if c.prioritized
                else ReplayBuffer("memory", c.buffer_size, min_capacity, c.memory_fraction)
            )
            self.loss_fn = DQNLoss("loss", double=c.double, huber=c.huber)
            self.optimizer = Optimizer("optimizer", [self.torso, self.q], c.lr, max_grad_norm=c.max_grad_norm)
            self.add(self.target_torso, self.target_q, self.nstep, self.memory, self.loss_fn, self.optimizer)
            self.gen = torch.Generator().manual_seed(seed + 2)
            self.steps = self.since_train = 0

    def build_inputs(self) -> dict[str, dict[str, Any]]:
        obs = self.obs_spec
        inputs: dict[str, dict[str, Any]] = {
            "policy": {"obs": obs, "gen": torch.Generator(), "epsilon": 1.0},
            "greedy": {"obs": obs},
        }
        if self.learner:
            inputs["remember"] = self.remember_inputs(self.action_spec)
            inputs["update"] = {"gen": torch.Generator()}
        return inputs

    def build(self, backend: str = "eager") -> Any:
        built = super().build(backend)
        if self.learner:
            self.sync_target()
        return built

    # -- API -------------------------------------------------------------------------------------------------
    @api
    def policy(self, obs: torch.Tensor, gen: torch.Generator, epsilon: float) -> torch.Tensor:
        """Epsilon-greedy actions."""
        greedy = self.q(self.torso(obs)).argmax(dim=1)
        assert self.action_spec.n is not None
        explore = torch.rand(obs.shape[0], generator=gen) < epsilon
        return torch.where(
            explore, torch.randint(0, self.action_spec.n, (obs.shape[0],), generator=gen), greedy
        )

    @api
    def greedy(self, obs: torch.Tensor) -> torch.Tensor:
        q: torch.Tensor = self.q(self.torso(obs))
        return q.argmax(dim=1)

    @api
    def update(self, gen: torch.Generator) -> torch.Tensor:
        c = self.config
        b = self.memory.sample(c.batch_size, gen, beta=c.per_beta + (1.0 - c.per_beta) * self.progress)
        q = self.q(self.torso(b["obs"]))
        with torch.no_grad():
            q_next_target = self.target_q(self.target_torso(b["next_obs"]))
            # double DQN picks the next action with the online network; plain DQN with the target one
            q_next_online = self.q(self.torso(b["next_obs"])) if c.double else q_next_target
        loss, td = self.loss_fn.loss(
            q, q_next_online, q_next_target, b["actions"], b["rewards"], b["discounts"], b["weights"]
        )
        self.optimizer.step(loss)
        if isinstance(self.memory, PrioritizedReplay):
            self.memory.update_priorities(b["indices"], td)
        return loss

    # -- the training program's interface --------------------------------------------------------------------
    def act(self, obs: torch.Tensor, gen: torch.Generator, explore: bool = True) -> Act:
        with torch.no_grad():
            a = self.policy(obs, gen, epsilon(self.progress, self.config)) if explore else self.greedy(obs)
        return Act(obs, a, a.numpy(), {})

    def sync_target(self) -> None:
        self.target_torso.load_state_dict(self.torso.state_dict())
        self.target_q.load_state_dict(self.q.state_dict())

    def observe(self, act: Act, tr: Transition) -> bool:
        c = self.config
        self.remember(
            act.obs, act.actions, tr.rewards, tr.next_obs, tr.terminations, tr.terminations | tr.truncations
        )
        n = act.obs.shape[0]
        before, self.steps = self.steps, self.steps + n
        self.since_train += n
        updated = False
        if self.steps >= c.learning_starts and self.since_train >= c.train_freq and self.memory.size > 0:
            self.optimizer.progress = self.progress
            for _ in range(c.gradient_steps if c.gradient_steps > 0 else self.since_train):
                self.update(self.gen)
            self.since_train, updated = 0, True
        if self.steps // c.target_update != before // c.target_update:
            self.sync_target()
        return updated
