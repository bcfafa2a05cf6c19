"""The reactors of the training program besides the envs: the policy (inference) and the PPO and DQN learners.

Messages. The policy sends an ``Act`` (the observations it saw, the actions it chose and, for PPO, their
log-probabilities and state values) to the learner; the env reactor sends an ``EnvStep`` (next observations,
rewards, flags, infos) to both. The learner publishes ``Weights`` (a snapshot of its state dict, numbered)
back to the policy, and ``done`` when the run should end.

Timing. Env step k happens at microstep k. At that tag the learner gets the step result together with the
policy's ``Act`` from microstep k-1 (that connection is delayed by one microstep), so it sees whole
transitions; if it updates, the new weights reach the policy at the same tag, before the policy acts on the
new observations. This is exactly the order of a synchronous loop ``act; step; learn; publish``, which is why
a run is bit-identical to that loop and, with the env bank's seeding, for any number of worker processes.
"""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from reflow.reactor import Reactor, reaction
from reflow.rl.algos.dqn import DQNConfig, ReplayBuffer, dqn_loss, epsilon
from reflow.rl.algos.gae import compute_gae
from reflow.rl.algos.networks import ActorCritic, QNetwork
from reflow.rl.algos.ppo import Batch, PPOConfig, ppo_update
from reflow.rl.envs.reactors import EnvStep

Progress = Callable[[int, float | None], None]  # (env steps so far, recent mean return)


@dataclass(frozen=True)
class Act:
    """What the policy did at one tag; PPO also keeps the log-probabilities and state values."""

    obs: torch.Tensor
    actions: torch.Tensor
    logprobs: torch.Tensor | None = None
    values: torch.Tensor | None = None


@dataclass(frozen=True)
class Weights:
    """A published state dict; ``version`` counts publications (1 is the first update)."""

    version: int
    state_dict: dict[str, torch.Tensor]


Choose = Callable[[nn.Module, torch.Tensor, int, torch.Generator], Act]  # (net, obs, policy step, gen)


def as_tensor(x: Any) -> torch.Tensor:
    """A batch of observations as a float32 tensor of shape ``(batch, features)``."""
    return torch.as_tensor(np.asarray(x, dtype=np.float32)).reshape(len(x), -1)


def ppo_choose(net: nn.Module, obs: torch.Tensor, step: int, gen: torch.Generator) -> Act:
    """Sample from the actor's distribution; keep log-probabilities and the critic's values for the update."""
    assert isinstance(net, ActorCritic)
    with torch.no_grad():
        logp = torch.log_softmax(net.logits(obs), dim=-1)
        actions = torch.multinomial(logp.exp(), 1, generator=gen).squeeze(1)
        return Act(obs, actions, logp.gather(1, actions.unsqueeze(1)).squeeze(1), net.value(obs))


def dqn_choose(net: nn.Module, obs: torch.Tensor, step: int, gen: torch.Generator, *, cfg: DQNConfig,
               total_iters: int) -> Act:
    """Epsilon-greedy on the Q-values, epsilon decaying with the policy's step count."""
    assert isinstance(net, QNetwork)
    with torch.no_grad():
        greedy = net(obs).argmax(dim=1)
    explore = torch.rand(obs.shape[0], generator=gen) < epsilon(step, total_iters, cfg)
    rand = torch.randint(0, net.n_actions, (obs.shape[0],), generator=gen)
    return Act(obs, torch.where(explore, rand, greedy))


class InferenceReactor(Reactor):
    """The policy: one batched forward pass per env step, on its own copy of the weights, sampling from a
    seeded generator. Published weights are loaded before acting at the same tag; after ``done`` it stops
    sending actions, so the envs are not stepped again."""

    def __init__(self, net: nn.Module, choose: Choose, seed: int, name: str = "policy") -> None:
        super().__init__(name)
        self.net = net
        self.choose = choose
        self.gen = torch.Generator().manual_seed(seed)
        self.obs = self.input("obs", np.ndarray)
        self.weights = self.input("weights", Weights)
        self.done = self.input("done", bool)
        self.actions = self.output("actions", np.ndarray)
        self.acted = self.output("acted", Act)
        self.version = 0  # of the weights in use
        self.steps = 0

    @reaction(triggers=("obs", "weights"), sources="done", effects=("actions", "acted"))
    def act(self) -> None:
        if self.weights.is_present:
            published = self.weights.get()
            self.net.load_state_dict(published.state_dict)
            self.version = published.version
        if self.done.is_present or not self.obs.is_present:
            return
        act = self.choose(self.net, as_tensor(self.obs.get()), self.steps, self.gen)
        self.steps += 1
        self.actions.set(act.actions.numpy())
        self.acted.set(act)


class Tracker:
    """Episode returns from the env infos, the learning curve, and the target-return test."""

    def __init__(self, window: int, target_return: float | None) -> None:
        self.window = window
        self.target_return = target_return
        self.returns: list[float] = []
        self.curve: list[tuple[int, float]] = []

    def record(self, infos: dict[str, Any], steps: int) -> None:
        if "_episode" in infos:
            self.returns.extend(float(r) for r in infos["episode"]["r"][infos["_episode"]])
            self.curve.append((steps, self.recent() or 0.0))

    def recent(self) -> float | None:
        tail = self.returns[-self.window:]
        return float(np.mean(tail)) if tail else None

    def reached(self) -> bool:
        r = self.recent()
        return (self.target_return is not None and len(self.returns) >= self.window and r is not None
                and r >= self.target_return)


class Learner(Reactor, ABC):
    """What both learners share: whole transitions in, weights and ``done`` out, episode bookkeeping, the
    stop test. ``observe`` is the algorithm; it calls ``publish`` after an update and ``stop_if_done`` where
    the algorithm allows the run to end."""

    def __init__(self, net: nn.Module, num_envs: int, total_steps: int, tracker: Tracker,
                 progress: Progress, name: str = "learner") -> None:
        super().__init__(name)
        self.net = net
        self.num_envs = num_envs
        self.total_steps = total_steps
        self.tracker = tracker
        self.progress = progress
        self.steps = 0
        self.version = 0
        self.step = self.input("step", EnvStep)
        self.acted = self.input("acted", Act)
        self.weights = self.output("weights", Weights)
        self.done = self.output("done", bool)

    @reaction(triggers=("step", "acted"), effects=("weights", "done"))
    def learn(self) -> None:
        step, act = self.step.get(), self.acted.get()
        self.steps += self.num_envs
        self.tracker.record(step.infos, self.steps)
        self.observe(act, step)

    @abstractmethod
    def observe(self, act: Act, step: EnvStep) -> None:
        """Take in one transition of every env (the algorithm)."""

    def publish(self) -> None:
        """Send a snapshot (a copy: the learner keeps training) of the weights to the policy."""
        self.version += 1
        snapshot = {k: v.detach().clone() for k, v in self.net.state_dict().items()}
        self.weights.set(Weights(self.version, snapshot))

    def stop_if_done(self) -> None:
        if self.steps >= self.total_steps or self.tracker.reached():
            self.done.set(True)
            self.request_stop()


class PPOLearner(Learner):
    """Collects ``num_steps`` steps of every env, computes GAE, runs the clipped minibatch epochs and
    publishes the new weights."""

    def __init__(self, net: ActorCritic, cfg: PPOConfig, num_envs: int, obs_dim: int, seed: int,
                 total_steps: int, tracker: Tracker, progress: Progress) -> None:
        super().__init__(net, num_envs, total_steps, tracker, progress)
        self.cfg = cfg
        self.ac = net
        self.opt = torch.optim.Adam(net.parameters(), lr=cfg.lr, eps=1e-5)
        self.gen = torch.Generator().manual_seed(seed)
        self.t = 0
        self.obs = torch.zeros(cfg.num_steps, num_envs, obs_dim)
        self.actions, self.logprobs, self.values, self.rewards, self.dones = (
            torch.zeros(cfg.num_steps, num_envs) for _ in range(5))

    def observe(self, act: Act, step: EnvStep) -> None:
        assert act.logprobs is not None and act.values is not None
        t = self.t
        self.obs[t], self.actions[t], self.logprobs[t], self.values[t] = (
            act.obs, act.actions.float(), act.logprobs, act.values)
        self.rewards[t] = torch.as_tensor(step.rewards, dtype=torch.float32)
        ended = np.logical_or(step.terminations, step.truncations)
        self.dones[t] = torch.as_tensor(ended, dtype=torch.float32)
        self.t = (t + 1) % self.cfg.num_steps
        if self.t:
            return
        p = self.cfg
        with torch.no_grad():  # the learner's weights equal the policy's until this update
            last_value = self.ac.value(as_tensor(step.obs))
        adv, ret = compute_gae(self.rewards, self.values, self.dones, last_value, p.gamma, p.gae_lambda)
        batch = Batch(self.obs.reshape(-1, self.obs.shape[-1]), self.actions.reshape(-1),
                      self.logprobs.reshape(-1), adv.reshape(-1), ret.reshape(-1))
        ppo_update(self.ac, self.opt, batch, p, self.gen)
        self.publish()
        self.progress(self.steps, self.tracker.recent())
        self.stop_if_done()


class DQNLearner(Learner):
    """Replay buffer, TD updates against a target network (synced every ``target_every`` steps), publishes
    after every update: synchronized Q-learning, one update per step of all envs."""

    def __init__(self, net: QNetwork, cfg: DQNConfig, num_envs: int, obs_dim: int, seed: int,
                 total_steps: int, tracker: Tracker, progress: Progress) -> None:
        super().__init__(net, num_envs, total_steps, tracker, progress)
        self.cfg = cfg
        self.q = net
        self.target = copy.deepcopy(net)
        self.opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
        self.buffer = ReplayBuffer(cfg.buffer_size, obs_dim)
        self.gen = torch.Generator().manual_seed(seed)
        self.it = 0

    def observe(self, act: Act, step: EnvStep) -> None:
        d = self.cfg
        real_next = np.array(step.obs, dtype=np.float32, copy=True)
        if "_final_obs" in step.infos:  # the true last observation of an episode, not the reset one
            for i in np.flatnonzero(step.infos["_final_obs"]):
                real_next[i] = step.infos["final_obs"][i]
        self.buffer.add(act.obs, act.actions, torch.as_tensor(step.rewards, dtype=torch.float32),
                        as_tensor(real_next), torch.as_tensor(step.terminations, dtype=torch.float32))
        self.it += 1
        if self.buffer.size >= d.learning_starts and self.it % d.train_every == 0:
            loss = dqn_loss(self.q, self.target, self.buffer.sample(d.batch_size, self.gen), d.gamma)
            self.opt.zero_grad()
            loss.backward()  # type: ignore[no-untyped-call]
            self.opt.step()
            self.publish()
            if self.it % d.target_every == 0:
                self.target.load_state_dict(self.q.state_dict())
        if self.it % 20 == 0:
            self.progress(self.steps, self.tracker.recent())
        self.stop_if_done()
