"""Losses and return estimators as components: GAE, PPO's clipped objective, the (double) DQN TD loss and
SAC's critic, actor and temperature losses. Each is one leaf API call on tensors other components made, so
an agent's graph shows exactly what feeds each loss."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from torch import nn

from reflow.components.component import Component, api
from reflow.components.spaces import Spec


class GAE(Component):
    """Generalised advantage estimation over a rollout ``(steps, envs)``; ``dones[t]`` cuts the bootstrap
    from step t+1 (the episode ended at t)."""

    def __init__(self, name: str, gamma: float, lam: float) -> None:
        super().__init__(name)
        self.gamma, self.lam = gamma, lam

    @api
    def advantages(
        self, rewards: torch.Tensor, values: torch.Tensor, dones: torch.Tensor, last_value: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(advantages, returns)``; returns = advantages + values, the critic's targets. The recursion
        runs in numpy, step by step on rows of a few envs, where torch would spend more on dispatching each
        op than on the arithmetic (the same float32 operations in the same order)."""
        r, v, d = (x.detach().numpy() for x in (rewards, values, dones))
        adv = np.zeros_like(r)
        running = np.zeros_like(r[0])
        next_value = last_value.detach().numpy()
        for t in reversed(range(r.shape[0])):
            live = 1.0 - d[t]
            delta = r[t] + self.gamma * next_value * live - v[t]
            running = delta + self.gamma * self.lam * live * running
            adv[t] = running
            next_value = v[t]
        out = torch.from_numpy(adv)
        return out, out + values


class PPOLoss(Component):
    """Clipped surrogate on normalised advantages + ``vf_coef`` x squared value error - ``ent_coef`` x
    entropy. ``clip`` can be scaled by setting ``clip_scale`` (a schedule)."""

    def __init__(self, name: str, clip: float, vf_coef: float, ent_coef: float) -> None:
        super().__init__(name)
        self.clip, self.vf_coef, self.ent_coef = clip, vf_coef, ent_coef
        self.clip_scale = 1.0

    @api
    def loss(
        self,
        logp: torch.Tensor,
        old_logp: torch.Tensor,
        advantages: torch.Tensor,
        values: torch.Tensor,
        returns: torch.Tensor,
        entropy: torch.Tensor,
    ) -> torch.Tensor:
        clip = self.clip * self.clip_scale
        adv = advantages
        if adv.numel() > 1:
            adv = (adv - adv.mean()) / (adv.std() + 1e-8)
        ratio = torch.exp(logp - old_logp)
        pg = torch.max(-adv * ratio, -adv * torch.clamp(ratio, 1 - clip, 1 + clip)).mean()
        v = 0.5 * ((values - returns) ** 2).mean()
        return pg + self.vf_coef * v - self.ent_coef * entropy.mean()


class DQNLoss(Component):
    """TD loss of Q(s, a) against r + discount x Q_target(s', a*), where a* is argmax Q_target (DQN) or
    argmax Q_online (double DQN, van Hasselt et al. 2016); importance ``weights`` from prioritized replay.
    Returns the loss and the TD errors (new priorities)."""

    def __init__(self, name: str, double: bool = True, huber: bool = False) -> None:
        super().__init__(name)
        self.double, self.huber = double, huber

    def check(self, method: str, specs: Mapping[str, Spec]) -> None:
        from reflow.errors import ComponentSpaceError

        if specs["q"] != specs["q_next_target"]:
            raise ComponentSpaceError(
                f"component {self.path!r} (DQNLoss), API method {method!r}: q is "
                f"{specs['q']} but q_next_target is {specs['q_next_target']}; both must "
                "come from Q heads of the same action space"
            )

    @api
    def loss(
        self,
        q: torch.Tensor,
        q_next_online: torch.Tensor,
        q_next_target: torch.Tensor,
        actions: torch.Tensor,
        rewards: torch.Tensor,
        discounts: torch.Tensor,
        weights: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            best = (q_next_online if self.double else q_next_target).argmax(dim=1, keepdim=True)
            target = rewards + discounts * q_next_target.gather(1, best).squeeze(1)
        q_sa = q.gather(1, actions.long().unsqueeze(1)).squeeze(1)
        td = q_sa - target
        per = nn.functional.smooth_l1_loss(q_sa, target, reduction="none") if self.huber else td.pow(2)
        return (weights * per).mean(), td.detach()


class SACLoss(Component):
    """SAC (Haarnoja et al. 2018): the critics regress on r + discount (min Q_target(s', a') - alpha log
    pi(a'|s')); the actor minimises alpha log pi(a|s) - min Q(s, a)."""

    @api
    def critic_loss(self, q1: torch.Tensor, q2: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return 0.5 * ((q1 - target) ** 2).mean() + 0.5 * ((q2 - target) ** 2).mean()

    @api
    def target(
        self,
        rewards: torch.Tensor,
        discounts: torch.Tensor,
        q1_next: torch.Tensor,
        q2_next: torch.Tensor,
        logp_next: torch.Tensor,
        alpha: torch.Tensor,
    ) -> torch.Tensor:
        return (rewards + discounts * (torch.min(q1_next, q2_next) - alpha * logp_next)).detach()

    @api
    def actor_loss(
        self, logp: torch.Tensor, q1: torch.Tensor, q2: torch.Tensor, alpha: torch.Tensor
    ) -> torch.Tensor:
        return (alpha.detach() * logp - torch.min(q1, q2)).mean()


class EntropyTuner(Component):
    """SAC's temperature: log alpha is learned so that the policy's entropy stays near ``target``
    (default: minus the number of action dimensions)."""

    def __init__(self, name: str, target: float, init_alpha: float = 1.0) -> None:
        super().__init__(name)
        self.target, self.init_alpha = target, init_alpha

    def create_variables(self, method: str, specs: Mapping[str, Spec]) -> None:
        self.module = nn.Module()
        self.module.register_parameter(
            "log_alpha", nn.Parameter(torch.tensor(float(torch.log(torch.tensor(self.init_alpha)))))
        )

    @api
    def alpha(self, logp: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(alpha, loss)``: the current temperature (no gradient) and its loss on this batch's logp."""
        assert self.module is not None
        log_alpha = self.module.get_parameter("log_alpha")
        loss = -(log_alpha * (logp.detach() + self.target)).mean()
        return log_alpha.exp().detach(), loss
