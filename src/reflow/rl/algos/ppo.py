"""PPO (Schulman et al. 2017) as a component graph: clipped surrogate, GAE, minibatch epochs.

Discrete actions get a categorical head, continuous ones a diagonal Gaussian. The defaults are the RL Zoo's
tuned CartPole-v1 hyper-parameters (8 envs x 32 steps, 20 epochs of 256-sample minibatches, gamma 0.98,
lambda 0.8, learning rate and clip range decaying linearly); ``reflow.rl.presets`` has others.

The agent, top to bottom:

    obs ── normalizer ─┬─ pi_torso ── pi_head ── sample ──▶ actions, logp
                       └─ v_torso ─── v_head ──────────────▶ value
    rollout ── gae ──▶ advantages, returns ── loss (pi_head.log_prob, entropy, v_head) ── optimizer
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from reflow.components import (
    GAE,
    MLP,
    Agent,
    ObsNormalizer,
    Optimizer,
    PPOLoss,
    RewardScaler,
    Spec,
    api,
)
from reflow.components.agent import Act, Transition
from reflow.components.heads import CategoricalHead, DiagGaussianHead, ValueHead


@dataclass(frozen=True)
class PPOConfig:
    """PPO hyper-parameters (RL Zoo's CartPole-v1 set by default)."""

    num_steps: int = 32
    lr: float = 1e-3
    lr_schedule: str = "linear"
    gamma: float = 0.98
    gae_lambda: float = 0.8
    epochs: int = 20
    minibatch_size: int = 256
    clip: float = 0.2
    clip_schedule: str = "linear"
    vf_coef: float = 0.5
    ent_coef: float = 0.0
    max_grad_norm: float = 0.5
    hidden: tuple[int, ...] = (64, 64)
    activation: str = "tanh"
    normalize_obs: bool = False
    normalize_reward: bool = False
    log_std_init: float = 0.0


class PPOAgent(Agent):
    algo = "ppo"
    POLICY = ("normalizer", "pi_torso", "pi_head", "v_torso", "v_head")

    def __init__(
        self, obs: Spec, action: Spec, config: PPOConfig, num_envs: int, seed: int, learner: bool = True
    ) -> None:
        super().__init__(obs, action, config, num_envs, seed, learner)
        c = config
        self.normalizer = ObsNormalizer("normalizer", enabled=c.normalize_obs)
        self.pi_torso, self.v_torso = (
            MLP("pi_torso", c.hidden, c.activation),
            MLP("v_torso", c.hidden, c.activation),
        )
        self.pi_head: CategoricalHead | DiagGaussianHead = (
            CategoricalHead("pi_head", action)
            if action.is_discrete
            else DiagGaussianHead("pi_head", action, log_std_init=c.log_std_init)
        )
        self.v_head = ValueHead("v_head", out_std=1.0)
        self.add(self.normalizer, self.pi_torso, self.pi_head, self.v_torso, self.v_head)
        if learner:
            self.gae = GAE("gae", c.gamma, c.gae_lambda)
            self.loss_fn = PPOLoss("loss", c.clip, c.vf_coef, c.ent_coef)
            self.optimizer = Optimizer(
                "optimizer",
                [self.pi_torso, self.pi_head, self.v_torso, self.v_head],
                c.lr,
                c.lr_schedule,
                c.max_grad_norm,
                eps=1e-5,
            )
            self.add(self.gae, self.loss_fn, self.optimizer)
            if c.normalize_reward:
                self.reward_scaler = RewardScaler("reward_scaler", c.gamma)
                self.add(self.reward_scaler)
            self.gen = torch.Generator().manual_seed(seed + 2)
            self.rollout: list[dict[str, torch.Tensor]] = []

    def build_inputs(self) -> dict[str, dict[str, Any]]:
        obs, gen = self.obs_spec, torch.Generator()
        inputs: dict[str, dict[str, Any]] = {"policy": {"obs": obs, "gen": gen}, "greedy": {"obs": obs}}
        if self.learner:
            e, scalar = self.num_envs, Spec(())
            inputs["advantages"] = {
                "rewards": Spec((e,)),
                "values": Spec((e,)),
                "dones": Spec((e,)),
                "last_value": torch.zeros(e),
            }
            inputs["update"] = {
                "obs": obs,
                "actions": self.action_spec if self.action_spec.is_discrete else Spec(self.action_spec.shape),
                "old_logp": scalar,
                "advantages": scalar,
                "returns": scalar,
            }
            inputs["normalize"] = {"obs": obs, "rewards": scalar, "dones": scalar}
        return inputs

    # -- API: what the graph shows ---------------------------------------------------------------------------
    def _dist(self, x: torch.Tensor) -> Any:
        return self.pi_head(self.pi_torso(x))

    @api
    def policy(self, obs: torch.Tensor, gen: torch.Generator) -> dict[str, torch.Tensor]:
        x = self.normalizer.normalize(obs)
        if isinstance(self.pi_head, CategoricalHead):
            actions, logp = self.pi_head.sample(self._dist(x), gen)
        else:
            mean, log_std = self._dist(x)
            actions, logp = self.pi_head.sample(mean, log_std, gen)
        return {"obs": x, "actions": actions, "logp": logp, "value": self.v_head(self.v_torso(x))}

    @api
    def greedy(self, obs: torch.Tensor) -> torch.Tensor:
        x = self.normalizer.normalize(obs)
        if isinstance(self.pi_head, CategoricalHead):
            return self.pi_head.greedy(self._dist(x))
        return self.pi_head.greedy(self._dist(x)[0])

    @api
    def normalize(self, obs: torch.Tensor, rewards: torch.Tensor, dones: torch.Tensor) -> torch.Tensor:
        """The learner's statistics: update them with ``obs`` and ``rewards``; the rewards, scaled if
        configured. (The observations were normalised by the policy that acted on them.)"""
        if self.config.normalize_obs:
            self.normalizer.update(obs)
        if not self.config.normalize_reward:
            return rewards
        return self.reward_scaler.scale(rewards, dones)

    @api
    def advantages(
        self, rewards: torch.Tensor, values: torch.Tensor, dones: torch.Tensor, last_value: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return self.gae.advantages(rewards, values, dones, last_value)

    @api
    def update(
        self,
        obs: torch.Tensor,
        actions: torch.Tensor,
        old_logp: torch.Tensor,
        advantages: torch.Tensor,
        returns: torch.Tensor,
    ) -> torch.Tensor:
        """One minibatch step (obs already normalised)."""
        if isinstance(self.pi_head, CategoricalHead):
            logp, entropy = self.pi_head.log_prob_entropy(self._dist(obs), actions)
        else:
            mean, log_std = self._dist(obs)
            logp, entropy = self.pi_head.log_prob_entropy(mean, log_std, actions)
        values = self.v_head(self.v_torso(obs))
        loss = self.loss_fn.loss(logp, old_logp, advantages, values, returns, entropy)
        self.optimizer.step(loss)
        return loss

    # -- the training program's interface --------------------------------------------------------------------
    def act(self, obs: torch.Tensor, gen: torch.Generator, explore: bool = True) -> Act:
        with torch.no_grad():
            if not explore:
                a = self.greedy(obs)
                return Act(obs, a, self.env_actions(a), {})
            out = self.policy(obs, gen)
        return Act(
            out["obs"],
            out["actions"],
            self.env_actions(out["actions"]),
            {"logp": out["logp"], "value": out["value"]},
        )

    def observe(self, act: Act, tr: Transition) -> bool:
        c = self.config
        # Per-step flags in numpy (a few booleans: a torch op each would cost more than the arithmetic).
        terms, truncs = tr.terminations.numpy(), tr.truncations.numpy()
        dones = torch.from_numpy((terms | truncs).astype(np.float32))
        with torch.no_grad():
            rewards = self.normalize(tr.obs, tr.rewards, dones)
            cut = truncs & ~terms  # time limit: bootstrap from the true last observation
            if cut.any():
                final = self.normalizer.normalize(tr.next_obs[torch.from_numpy(cut)])
                rewards = rewards.clone()
                rewards[torch.from_numpy(cut)] += c.gamma * self.v_head(self.v_torso(final))
        self.rollout.append(
            {
                "obs": act.obs,
                "actions": act.actions,
                "logp": act.extras["logp"],
                "value": act.extras["value"],
                "rewards": rewards,
                "dones": dones,
            }
        )
        if len(self.rollout) < c.num_steps:
            return False
        r = {k: torch.stack([s[k] for s in self.rollout]) for k in self.rollout[0]}
        self.rollout = []
        with torch.no_grad():
            last = self.v_head(self.v_torso(self.normalizer.normalize(tr.obs)))
            adv, ret = self.advantages(r["rewards"], r["value"], r["dones"], last)
        flat = {
            "obs": r["obs"].flatten(0, 1),
            "actions": r["actions"].flatten(0, 1),
            "old_logp": r["logp"].flatten(0, 1),
            "advantages": adv.flatten(),
            "returns": ret.flatten(),
        }
        self.optimizer.progress = self.progress
        self.loss_fn.clip_scale = 1.0 - self.progress if c.clip_schedule == "linear" else 1.0
        n = flat["obs"].shape[0]
        for _ in range(c.epochs):
            perm = torch.randperm(n, generator=self.gen)
            for start in range(0, n, c.minibatch_size):
                idx = perm[start : start + c.minibatch_size]
                self.update(**{k: v[idx] for k, v in flat.items()})
        self.normalizer.freeze()
        return True
