"""The training program: envs -> policy (inference) -> learner, with the learner's weights published back.

Structure. Three roles, kept as plain functions so each is testable on its own:

* the env role steps the vector env bank (``reflow.rl.make_vec``) with a batch of actions;
* the policy role runs one batched forward pass on the observations and samples actions with a seeded
  ``torch.Generator`` (it holds its own copy of the weights);
* the learner role turns a finished rollout (PPO) or replay samples (DQN) into updated weights and publishes
  them to the policy, which picks them up before its next step: the policy acts with weights that are one
  publication behind at most, exactly like a learner reactor sending weights at a later tag.

The roles run here as a synchronous loop in that order. The reactor runtime was not ready when this was
written; because the roles exchange only tensors and state dicts, wiring them as reactors is a thin change.

Determinism. Every random draw has an explicit source: env i is seeded with ``seed + i`` by the bank (which
gives identical results for any number of worker processes), network init and action sampling use
``torch.Generator`` objects seeded from ``seed``, and the learner runs with one intra-op thread and
deterministic algorithms, so a run is bit-identical across reruns and worker counts.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from gymnasium.vector import AutoresetMode

from reflow.errors import TrainConfigError
from reflow.rl.algos.dqn import DQNConfig, ReplayBuffer, dqn_loss, epsilon
from reflow.rl.algos.gae import compute_gae
from reflow.rl.algos.networks import ActorCritic, QNetwork
from reflow.rl.algos.ppo import Batch, PPOConfig, ppo_update
from reflow.rl.checkpoint import build_net

ALGOS = ("ppo", "dqn")


@dataclass(frozen=True)
class TrainConfig:
    """One training run."""

    env_id: str = "CartPole-v1"
    algo: str = "ppo"
    num_envs: int = 16
    num_workers: int = 1
    seed: int = 0
    total_steps: int = 500_000
    target_return: float | None = 475.0
    window: int = 20
    ppo: PPOConfig = field(default_factory=PPOConfig)
    dqn: DQNConfig = field(default_factory=DQNConfig)


@dataclass
class TrainResult:
    """What a run produced: the trained network and its learning curve."""

    net: torch.nn.Module
    obs_dim: int
    n_actions: int
    steps: int
    seconds: float
    reached_target: bool
    curve: list[tuple[int, float]]  # (env steps, mean return of the last `window` episodes)
    episode_returns: list[float]


Progress = Callable[[int, float | None], None]  # (env steps so far, recent mean return)


def policy_act_ppo(net: ActorCritic, obs: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, ...]:
    """Batched inference: sampled actions, their log-probabilities and the state values."""
    with torch.no_grad():
        logp = torch.log_softmax(net.logits(obs), dim=-1)
        actions = torch.multinomial(logp.exp(), 1, generator=gen).squeeze(1)
        return actions, logp.gather(1, actions.unsqueeze(1)).squeeze(1), net.value(obs)


def policy_act_dqn(net: QNetwork, obs: torch.Tensor, eps: float, gen: torch.Generator) -> torch.Tensor:
    """Epsilon-greedy batched inference."""
    with torch.no_grad():
        greedy = net(obs).argmax(dim=1)
    n_actions = net.n_actions
    explore = torch.rand(obs.shape[0], generator=gen) < eps
    rand = torch.randint(0, n_actions, (obs.shape[0],), generator=gen)
    return torch.where(explore, rand, greedy)


def _validate(cfg: TrainConfig) -> None:
    if cfg.algo not in ALGOS:
        raise TrainConfigError(f"unknown algo {cfg.algo!r}; choose one of {', '.join(ALGOS)}")
    if cfg.num_envs < 1 or cfg.num_workers < 1 or cfg.total_steps < 1:
        raise TrainConfigError(f"num_envs, num_workers and total_steps must be >= 1, got {cfg.num_envs}, "
                               f"{cfg.num_workers}, {cfg.total_steps}")


class _Tracker:
    """Episode returns from the env infos, the learning curve, and the stop test."""

    def __init__(self, cfg: TrainConfig) -> None:
        self.cfg = cfg
        self.returns: list[float] = []
        self.curve: list[tuple[int, float]] = []

    def record(self, infos: dict[str, Any], steps: int) -> None:
        if "_episode" in infos:
            self.returns.extend(float(r) for r in infos["episode"]["r"][infos["_episode"]])
            self.curve.append((steps, self.recent() or 0.0))

    def recent(self) -> float | None:
        tail = self.returns[-self.cfg.window:]
        return float(np.mean(tail)) if tail else None

    def reached(self) -> bool:
        r = self.recent()
        return (self.cfg.target_return is not None and len(self.returns) >= self.cfg.window
                and r is not None and r >= self.cfg.target_return)


def train(cfg: TrainConfig, progress: Progress | None = None) -> TrainResult:
    """Run ``cfg`` to ``total_steps`` env steps or until the recent mean return reaches ``target_return``."""
    from reflow.rl import make_vec

    _validate(cfg)
    threads = torch.get_num_threads()
    det = torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    try:
        with make_vec(cfg.env_id, cfg.num_envs, num_workers=cfg.num_workers, seed=cfg.seed,
                      autoreset_mode=AutoresetMode.SAME_STEP) as env:
            obs_dim = int(np.prod(env.single_observation_space.shape or (1,)))
            n_actions = int(getattr(env.single_action_space, "n", 0))
            if n_actions < 1:
                raise TrainConfigError(f"{cfg.env_id} has a non-discrete action space; {cfg.algo} here "
                                       "supports discrete actions only (try CartPole-v1 or Acrobot-v1)")
            loop = _ppo_loop if cfg.algo == "ppo" else _dqn_loop
            return loop(cfg, env, obs_dim, n_actions, progress or (lambda s, r: None))
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(det)


def _as_tensor(x: Any) -> torch.Tensor:
    return torch.as_tensor(np.asarray(x, dtype=np.float32)).reshape(len(x), -1)


def _ppo_loop(cfg: TrainConfig, env: Any, obs_dim: int, n_actions: int, progress: Progress) -> TrainResult:
    p = cfg.ppo
    learner_net = build_net("ppo", obs_dim, n_actions, p.hidden, cfg.seed)
    assert isinstance(learner_net, ActorCritic)
    policy_net = copy.deepcopy(learner_net)
    opt = torch.optim.Adam(learner_net.parameters(), lr=p.lr, eps=1e-5)
    act_gen = torch.Generator().manual_seed(cfg.seed + 1)
    learn_gen = torch.Generator().manual_seed(cfg.seed + 2)
    tracker = _Tracker(cfg)
    t0, steps = time.perf_counter(), 0
    obs = _as_tensor(env.reset(seed=cfg.seed)[0])
    n = cfg.num_envs
    while steps < cfg.total_steps and not tracker.reached():
        b_obs = torch.zeros(p.num_steps, n, obs_dim)
        b_act, b_logp, b_val, b_rew, b_done = (torch.zeros(p.num_steps, n) for _ in range(5))
        for t in range(p.num_steps):
            actions, logp, value = policy_act_ppo(policy_net, obs, act_gen)
            next_obs, rew, term, trunc, infos = env.step(actions.numpy())
            b_obs[t], b_act[t], b_logp[t], b_val[t] = obs, actions.float(), logp, value
            b_rew[t] = torch.as_tensor(rew, dtype=torch.float32)
            b_done[t] = torch.as_tensor(np.logical_or(term, trunc), dtype=torch.float32)
            obs = _as_tensor(next_obs)
            steps += n
            tracker.record(infos, steps)
        with torch.no_grad():
            last_value = policy_net.value(obs)
        adv, ret = compute_gae(b_rew, b_val, b_done, last_value, p.gamma, p.gae_lambda)
        batch = Batch(b_obs.reshape(-1, obs_dim), b_act.reshape(-1), b_logp.reshape(-1), adv.reshape(-1),
                      ret.reshape(-1))
        ppo_update(learner_net, opt, batch, p, learn_gen)
        policy_net.load_state_dict(learner_net.state_dict())  # publish the new weights to inference
        progress(steps, tracker.recent())
    return TrainResult(learner_net, obs_dim, n_actions, steps, time.perf_counter() - t0, tracker.reached(),
                       tracker.curve, tracker.returns)


def _dqn_loop(cfg: TrainConfig, env: Any, obs_dim: int, n_actions: int, progress: Progress) -> TrainResult:
    d = cfg.dqn
    q = build_net("dqn", obs_dim, n_actions, d.hidden, cfg.seed)
    assert isinstance(q, QNetwork)
    target, policy_net = copy.deepcopy(q), copy.deepcopy(q)
    opt = torch.optim.Adam(q.parameters(), lr=d.lr)
    buf = ReplayBuffer(d.buffer_size, obs_dim)
    act_gen = torch.Generator().manual_seed(cfg.seed + 1)
    learn_gen = torch.Generator().manual_seed(cfg.seed + 2)
    tracker = _Tracker(cfg)
    t0, steps, it = time.perf_counter(), 0, 0
    obs = _as_tensor(env.reset(seed=cfg.seed)[0])
    total_iters = max(1, cfg.total_steps // cfg.num_envs)
    while steps < cfg.total_steps and not tracker.reached():
        actions = policy_act_dqn(policy_net, obs, epsilon(it, total_iters, d), act_gen)
        next_obs, rew, term, _, infos = env.step(actions.numpy())
        real_next = np.array(next_obs, dtype=np.float32, copy=True)
        if "_final_obs" in infos:
            for i in np.flatnonzero(infos["_final_obs"]):
                real_next[i] = infos["final_obs"][i]
        buf.add(obs, actions, torch.as_tensor(rew, dtype=torch.float32), _as_tensor(real_next),
                torch.as_tensor(term, dtype=torch.float32))
        obs = _as_tensor(next_obs)
        steps += cfg.num_envs
        it += 1
        tracker.record(infos, steps)
        if buf.size >= d.learning_starts and it % d.train_every == 0:
            loss = dqn_loss(q, target, buf.sample(d.batch_size, learn_gen), d.gamma)
            opt.zero_grad()
            loss.backward()  # type: ignore[no-untyped-call]
            opt.step()
            policy_net.load_state_dict(q.state_dict())  # publish to inference
            if it % d.target_every == 0:
                target.load_state_dict(q.state_dict())
        if it % 20 == 0:
            progress(steps, tracker.recent())
    return TrainResult(q, obs_dim, n_actions, steps, time.perf_counter() - t0, tracker.reached(),
                       tracker.curve, tracker.returns)
