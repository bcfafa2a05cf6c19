"""SAC (Haarnoja et al. 2018) as a component graph: a squashed-Gaussian actor, twin critics with Polyak-
averaged targets, and a learned temperature that keeps the policy's entropy near -dim(actions).

Defaults follow Stable-Baselines3 (256x256 ReLU networks, batch 256, tau 0.005, one gradient step per env
step after 100 random ones) with the RL Zoo's Pendulum-v1 learning rate (1e-3).

    obs ── actor_torso ── actor_head.sample ──────────────────────────────────────▶ actions
    memory.sample ─┬─ actor (next obs) ── target_q1, target_q2 ── loss.target ──┐
                   ├─ q1, q2 (obs, actions) ────────────────── loss.critic_loss ┴─ critic_optimizer
                   └─ actor (obs) ─┬─ q1, q2 ─────────────── loss.actor_loss ──── actor_optimizer
                                   └─ entropy.alpha ────────────────────────────── alpha_optimizer
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from reflow.components import (
    MLP,
    Component,
    EntropyTuner,
    NStep,
    Optimizer,
    ReplayBuffer,
    SACLoss,
    Spec,
    SquashedGaussianHead,
    ValueHead,
    api,
)
from reflow.components.agent import Act, OffPolicyAgent, Transition


@dataclass(frozen=True)
class SACConfig:
    """SAC hyper-parameters; steps are env steps."""

    lr: float = 1e-3
    gamma: float = 0.99
    tau: float = 0.005
    buffer_size: int = 1_000_000
    batch_size: int = 256
    learning_starts: int = 100
    train_freq: int = 1
    gradient_steps: int = 1
    hidden: tuple[int, ...] = (256, 256)
    activation: str = "relu"
    init_alpha: float = 1.0
    memory_fraction: float = 0.25


class Critic(Component):
    """Q(s, a): an MLP on the concatenated observation and action, and a value head."""

    def __init__(self, name: str, hidden: tuple[int, ...], activation: str) -> None:
        super().__init__(name)
        self.torso, self.head = MLP("torso", hidden, activation), ValueHead("head")
        self.add(self.torso, self.head)

    @api
    def forward(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.head(self.torso(torch.cat([obs, actions], dim=-1)))
        return out


class SACAgent(OffPolicyAgent):
    algo = "sac"
    POLICY = ("actor_torso", "actor_head")

    def __init__(
        self, obs: Spec, action: Spec, config: SACConfig, num_envs: int, seed: int, learner: bool = True
    ) -> None:
        super().__init__(obs, action, config, num_envs, seed, learner)
        c = config
        self.actor_torso = MLP("actor_torso", c.hidden, c.activation)
        self.actor_head = SquashedGaussianHead("actor_head", action, out_std=0.01)
        self.add(self.actor_torso, self.actor_head)
        self.acted = 0
        if learner:
            self.q1, self.q2 = Critic("q1", c.hidden, c.activation), Critic("q2", c.hidden, c.activation)
            self.target_q1 = Critic("target_q1", c.hidden, c.activation)
            self.target_q2 = Critic("target_q2", c.hidden, c.activation)
            self.entropy = EntropyTuner("entropy", target=-float(action.size), init_alpha=c.init_alpha)
            self.nstep = NStep("nstep", 1, c.gamma)
            self.memory = ReplayBuffer(
                "memory",
                c.buffer_size,
                max(c.batch_size, min(c.learning_starts, c.buffer_size)),
                c.memory_fraction,
            )
            self.loss_fn = SACLoss("loss")
            self.critic_optimizer = Optimizer("critic_optimizer", [self.q1, self.q2], c.lr)
            self.actor_optimizer = Optimizer("actor_optimizer", [self.actor_torso, self.actor_head], c.lr)
            self.alpha_optimizer = Optimizer("alpha_optimizer", [self.entropy], c.lr)
            self.add(
                self.q1,
                self.q2,
                self.target_q1,
                self.target_q2,
                self.entropy,
                self.nstep,
                self.memory,
                self.loss_fn,
                self.critic_optimizer,
                self.actor_optimizer,
                self.alpha_optimizer,
            )
            self.gen = torch.Generator().manual_seed(seed + 2)
            self.steps = self.since_train = 0

    def build_inputs(self) -> dict[str, dict[str, Any]]:
        obs, act = self.obs_spec, Spec(self.action_spec.shape)
        inputs: dict[str, dict[str, Any]] = {
            "policy": {"obs": obs, "gen": torch.Generator()},
            "greedy": {"obs": obs},
        }
        if self.learner:
            inputs["remember"] = self.remember_inputs(act)
            inputs["update"] = {"gen": torch.Generator()}
        return inputs

    def build(self, backend: str = "eager") -> Any:
        built = super().build(backend)
        if self.learner:
            self.polyak(1.0)
        return built

    # -- API -------------------------------------------------------------------------------------------------
    @api
    def policy(self, obs: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        mean, log_std = self.actor_head(self.actor_torso(obs))
        out: tuple[torch.Tensor, torch.Tensor] = self.actor_head.sample(mean, log_std, gen)
        return out

    @api
    def greedy(self, obs: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.actor_head.greedy(self.actor_head(self.actor_torso(obs))[0])
        return out

    @api
    def update(self, gen: torch.Generator) -> torch.Tensor:
        b = self.memory.sample(self.config.batch_size, gen)
        actions, logp = self.policy(b["obs"], gen)
        alpha, alpha_loss = self.entropy.alpha(logp)
        self.alpha_optimizer.step(alpha_loss)
        with torch.no_grad():
            next_actions, next_logp = self.policy(b["next_obs"], gen)
            target = self.loss_fn.target(
                b["rewards"],
                b["discounts"],
                self.target_q1(b["next_obs"], next_actions),
                self.target_q2(b["next_obs"], next_actions),
                next_logp,
                alpha,
            )
        critic_loss = self.loss_fn.critic_loss(
            self.q1(b["obs"], b["actions"]), self.q2(b["obs"], b["actions"]), target
        )
        self.critic_optimizer.step(critic_loss)
        actor_loss = self.loss_fn.actor_loss(
            logp, self.q1(b["obs"], actions), self.q2(b["obs"], actions), alpha
        )
        self.actor_optimizer.step(actor_loss)
        return critic_loss

    # -- the training program's interface --------------------------------------------------------------------
    def act(self, obs: torch.Tensor, gen: torch.Generator, explore: bool = True) -> Act:
        n = obs.shape[0]
        with torch.no_grad():
            if not explore:
                a = self.greedy(obs)
            elif self.acted < self.config.learning_starts:  # uniform random actions to start with
                low, high = torch.tensor(self.action_spec.low), torch.tensor(self.action_spec.high)
                a = low + (high - low) * torch.rand((n, *self.action_spec.shape), generator=gen)
                a = a.float()
            else:
                a = self.policy(obs, gen)[0]
        if explore:
            self.acted += n
        return Act(obs, a, self.env_actions(a), {})

    def polyak(self, tau: float) -> None:
        """target <- tau x online + (1 - tau) x target."""
        pairs: Mapping[Critic, Critic] = {self.target_q1: self.q1, self.target_q2: self.q2}
        with torch.no_grad():
            for target, online in pairs.items():
                for t, o in zip(target.parameters(), online.parameters(), strict=True):
                    t.lerp_(o, tau)

    def observe(self, act: Act, tr: Transition) -> bool:
        c = self.config
        self.remember(
            act.obs, act.actions, tr.rewards, tr.next_obs, tr.terminations, tr.terminations | tr.truncations
        )
        n = act.obs.shape[0]
        self.steps += n
        self.since_train += n
        if self.steps < c.learning_starts or self.since_train < c.train_freq:
            return False
        for _ in range(c.gradient_steps if c.gradient_steps > 0 else self.since_train):
            self.update(self.gen)
            self.polyak(c.tau)
        self.since_train = 0
        return True
