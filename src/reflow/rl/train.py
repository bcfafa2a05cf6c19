"""The training program: envs -> policy (inference) -> learner, with the learner's weights published back.

Structure. Training is one reactor program, ``TrainProgram`` (named ``train``), with three reactors:

* ``envs`` (``reflow.rl.envs.reactors.EnvReactor``) steps the vector env bank, whose slices run in worker
  processes, once per batch of actions;
* ``policy`` (``reflow.rl.learners.InferenceReactor``) runs one batched forward pass on the observations and
  samples actions with a seeded ``torch.Generator``; it holds its own copy of the weights;
* ``learner`` (``PPOLearner`` or ``DQNLearner``) takes in whole transitions, updates its network and publishes
  the new weights (a state dict) to the policy, which loads them before its next action. It also decides when
  the run ends (step budget or target return): it sends ``done`` to the policy and requests the stop.

::

       envs ──── obs ───────────────────────────────▶ policy
       envs ◀─── actions ──────────────────────────── policy    (one microstep later)
       envs ──── step: obs, rewards, flags, infos ──▶ learner
     policy ──── acted: obs, actions, logp, value ──▶ learner   (one microstep later)
    learner ──── weights, done ─────────────────────▶ policy

Determinism. Every random draw has an explicit source: env i is seeded with ``seed + i`` by the bank (which
gives identical results for any number of worker processes), network init and action sampling use
``torch.Generator`` objects seeded from ``seed``, the reactor scheduler orders everything by logical tag, and
the learner runs with one intra-op thread and deterministic algorithms, so a run is bit-identical across
reruns and worker counts.
"""

from __future__ import annotations

import copy
import functools
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from gymnasium.spaces import Discrete
from gymnasium.vector import AutoresetMode

from reflow.errors import TrainConfigError
from reflow.reactor import Reactor, run
from reflow.rl.algos.dqn import DQNConfig
from reflow.rl.algos.networks import ActorCritic, QNetwork
from reflow.rl.algos.ppo import PPOConfig
from reflow.rl.checkpoint import build_net
from reflow.rl.envs.reactors import EnvReactor, VecEnv
from reflow.rl.interrupt import first_interrupt_stops
from reflow.rl.learners import (
    DQNLearner,
    InferenceReactor,
    Learner,
    PPOLearner,
    Progress,
    Tracker,
    dqn_choose,
    ppo_choose,
)

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
    fit_workers: bool = True  # the env bank may use fewer processes when fewer cores are free
    backend: str = "local"  # "ray": the envs on the nodes of a Ray cluster, the learner here (same results)
    ray_address: str | None = None  # backend="ray": the cluster (None: the connected one, RAY_ADDRESS, local)
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
    interrupted: bool = False  # stopped early by Ctrl-C (``reflow.rl.interrupt``)


def _validate(cfg: TrainConfig) -> None:
    if cfg.algo not in ALGOS:
        raise TrainConfigError(f"unknown algo {cfg.algo!r}; choose one of {', '.join(ALGOS)}")
    if cfg.num_envs < 1 or cfg.num_workers < 1 or cfg.total_steps < 1:
        raise TrainConfigError(f"num_envs, num_workers and total_steps must be >= 1, got {cfg.num_envs}, "
                               f"{cfg.num_workers}, {cfg.total_steps}")


class TrainProgram(Reactor):
    """The reactor program of one run of ``cfg`` on the open vector env ``env`` (``obs_dim`` features,
    ``n_actions`` discrete actions). Run it once with ``reflow.reactor.run``; ``result`` reads the outcome."""

    def __init__(self, cfg: TrainConfig, env: VecEnv, obs_dim: int, n_actions: int,
                 progress: Progress | None = None, stop_when: Callable[[], bool] | None = None) -> None:
        super().__init__("train")
        self.cfg, self.obs_dim, self.n_actions = cfg, obs_dim, n_actions
        hidden = cfg.ppo.hidden if cfg.algo == "ppo" else cfg.dqn.hidden
        net = build_net(cfg.algo, obs_dim, n_actions, hidden, cfg.seed)
        tracker = Tracker(cfg.window, cfg.target_return)
        report = progress or (lambda steps, recent: None)
        learner: Learner
        if isinstance(net, ActorCritic):
            learner = PPOLearner(net, cfg.ppo, cfg.num_envs, obs_dim, cfg.seed + 2, cfg.total_steps, tracker,
                                 report)
            choose = ppo_choose
        else:
            assert isinstance(net, QNetwork)
            learner = DQNLearner(net, cfg.dqn, cfg.num_envs, obs_dim, cfg.seed + 2, cfg.total_steps, tracker,
                                 report)
            iters = max(1, cfg.total_steps // cfg.num_envs)
            choose = functools.partial(dqn_choose, cfg=cfg.dqn, total_iters=iters)
        self.envs = self.add(EnvReactor(env, steps=None, seed=cfg.seed, stop_when=stop_when))
        self.policy = self.add(InferenceReactor(copy.deepcopy(net), choose, cfg.seed + 1))
        self.learner = self.add(learner)
        self.connect(self.envs.obs, self.policy.obs)
        self.connect(self.policy.actions, self.envs.actions, after=0)
        self.connect(self.envs.step_out, self.learner.step)
        self.connect(self.policy.acted, self.learner.acted, after=0)
        self.connect(self.learner.weights, self.policy.weights)
        self.connect(self.learner.done, self.policy.done)

    def result(self, seconds: float) -> TrainResult:
        """The learner's network, step count and learning curve after the run."""
        t = self.learner.tracker
        return TrainResult(self.learner.net, self.obs_dim, self.n_actions, self.learner.steps, seconds,
                           t.reached(), t.curve, t.returns)


def train(cfg: TrainConfig, progress: Progress | None = None) -> TrainResult:
    """Run ``cfg`` to ``total_steps`` env steps or until the recent mean return reaches ``target_return``."""
    from reflow.rl import make_vec

    _validate(cfg)
    with make_vec(cfg.env_id, cfg.num_envs, num_workers=cfg.num_workers, seed=cfg.seed,
                  autoreset_mode=AutoresetMode.SAME_STEP, fit_workers=cfg.fit_workers,
                  backend=cfg.backend, ray_address=cfg.ray_address) as env:
        return train_on(env, cfg, progress)


def train_on(env: VecEnv, cfg: TrainConfig, progress: Progress | None = None) -> TrainResult:
    """Run the training program of ``cfg`` on an open vector env (``cfg.env_id`` and ``num_workers`` are not
    used). ``env`` must reset in gymnasium's ``SAME_STEP`` autoreset mode and put episode statistics in its
    infos, like ``make_vec(..., autoreset_mode=AutoresetMode.SAME_STEP)``.

    With ``algo="dqn"`` this is synchronized parallel Q-learning: ``num_envs`` env actors stepped in lock
    step, one learner, one synchronous update per step; any env transport with the vector env interface can
    be plugged in (the benchmarks compare reflow's env bank with Ray actors this way).
    """
    _validate(cfg)
    if env.num_envs != cfg.num_envs:
        raise TrainConfigError(f"the env has {env.num_envs} sub-envs but the config asks for num_envs="
                               f"{cfg.num_envs}; make them equal")
    obs_dim = int(np.prod(env.single_observation_space.shape or (1,)))
    act_space = env.single_action_space
    n_actions = int(act_space.n) if isinstance(act_space, Discrete) else 0
    if n_actions < 1:
        raise TrainConfigError(f"{cfg.env_id} has a non-discrete action space; {cfg.algo} here supports "
                               "discrete actions only (try CartPole-v1 or Acrobot-v1)")
    threads = torch.get_num_threads()
    det = torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    try:
        with first_interrupt_stops() as interrupted:
            program = TrainProgram(cfg, env, obs_dim, n_actions, progress, stop_when=interrupted.is_set)
            t0 = time.perf_counter()
            run(program)
        result = program.result(time.perf_counter() - t0)
        result.interrupted = interrupted.is_set()
        return result
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(det)
