"""The training program: envs -> policy (inference) -> learner, with the learner's weights published back.

Structure. Training is one reactor program, ``TrainProgram`` (named ``train``), with three reactors:

* ``envs`` (``reflow.rl.envs.reactors.EnvReactor``) steps the vector env bank, whose slices run in worker
  processes, once per batch of actions;
* ``policy`` (``reflow.rl.learners.InferenceReactor``) runs the policy-role agent on the observations and
  samples actions with a seeded ``torch.Generator``; it holds its own copy of the weights;
* ``learner`` (``reflow.rl.learners.LearnerReactor``) feeds whole transitions to the learner-role agent
  (PPO, DQN or SAC from ``reflow.rl.algos``, each a component graph) and publishes the policy state when the
  agent updated; the policy loads it before its next action. It also decides when the run ends (step budget
  or target return): it sends ``done`` to the policy and requests the stop.

::

       envs ──── obs ───────────────────────────────▶ policy
       envs ◀─── actions ──────────────────────────── policy    (one microstep later)
       envs ──── step: obs, rewards, flags, infos ──▶ learner
     policy ──── acted: obs, actions, extras ───────▶ learner   (one microstep later)
    learner ──── weights, done ─────────────────────▶ policy

Determinism. Every random draw has an explicit source: env i is seeded with ``seed + i`` by the bank (which
gives identical results for any number of worker processes), weights are initialised per component from
``seed`` and the component's path, action sampling and minibatch order use ``torch.Generator`` objects seeded
from ``seed``, the reactor scheduler orders everything by logical tag, and training runs with one intra-op
thread and deterministic algorithms, so a run is bit-identical across reruns and worker counts.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from gymnasium.vector import AutoresetMode

from reflow.components import Agent, from_space
from reflow.errors import TrainConfigError
from reflow.reactor import Reactor, run
from reflow.rl.algos import AGENTS, DQNConfig, PPOConfig, SACConfig, make_agent
from reflow.rl.envs.reactors import EnvReactor, VecEnv
from reflow.rl.interrupt import first_interrupt_stops
from reflow.rl.learners import InferenceReactor, LearnerReactor, Progress, Tracker

ALGOS = tuple(AGENTS)


@dataclass(frozen=True)
class TrainConfig:
    """One training run; ``ppo`` / ``dqn`` / ``sac`` hold the chosen algorithm's hyper-parameters."""

    env_id: str = "CartPole-v1"
    algo: str = "ppo"
    num_envs: int = 8
    num_workers: int = 1
    fit_workers: bool = True  # the env bank may use fewer processes when fewer cores are free (same results)
    backend: str = "local"  # "ray": the envs on the nodes of a Ray cluster, the learner here (same results)
    ray_address: str | None = None  # backend="ray": the cluster (None: the connected one, RAY_ADDRESS, local)
    seed: int = 0
    total_steps: int = 500_000
    target_return: float | None = 475.0
    window: int = 20
    eval_every: int = 0  # env steps between greedy evaluations (0: none); see learners.Tracker
    eval_episodes: int = 10
    build_backend: str = "eager"  # the agents' staged build: "eager" PyTorch or "compile" (torch.compile)
    ppo: PPOConfig = field(default_factory=PPOConfig)
    dqn: DQNConfig = field(default_factory=DQNConfig)
    sac: SACConfig = field(default_factory=SACConfig)

    @property
    def hparams(self) -> Any:
        """The hyper-parameters of ``algo``."""
        return getattr(self, self.algo)


@dataclass
class TrainResult:
    """What a run produced: the trained (learner-role) agent and its learning curve."""

    agent: Agent
    steps: int
    seconds: float
    reached_target: bool
    curve: list[tuple[int, float]]  # (env steps, mean return of the last `window` episodes)
    episode_returns: list[float]
    evals: list[tuple[int, float]] = field(default_factory=list)  # (env steps, greedy mean return)
    best_policy: dict[str, torch.Tensor] | None = None  # the best evaluated policy state, if evaluated
    interrupted: bool = False  # stopped early by Ctrl-C (``reflow.rl.interrupt``)

    def policy_state(self) -> dict[str, torch.Tensor]:
        """What a checkpoint should hold: the best evaluated policy, else the last one."""
        return self.best_policy if self.best_policy is not None else self.agent.policy_state()


def _validate(cfg: TrainConfig) -> None:
    if cfg.algo not in ALGOS:
        raise TrainConfigError(f"unknown algo {cfg.algo!r}; choose one of {', '.join(ALGOS)}")
    if cfg.num_envs < 1 or cfg.num_workers < 1 or cfg.total_steps < 1:
        raise TrainConfigError(
            f"num_envs, num_workers and total_steps must be >= 1, got {cfg.num_envs}, "
            f"{cfg.num_workers}, {cfg.total_steps}"
        )


class TrainProgram(Reactor):
    """The reactor program of one run of ``cfg`` on the open vector env ``env``. Building it builds both
    agents (the staged build checks them against the env's spaces). Run it once with
    ``reflow.reactor.run``; ``result`` reads the outcome."""

    def __init__(self, cfg: TrainConfig, env: VecEnv, progress: Progress | None = None,
                 stop_when: Callable[[], bool] | None = None) -> None:
        super().__init__("train")
        self.cfg = cfg
        obs, action = from_space(env.single_observation_space), from_space(env.single_action_space)
        learner = make_agent(cfg.algo, obs, action, cfg.hparams, cfg.num_envs, cfg.seed, True,
                             cfg.build_backend)
        policy = make_agent(cfg.algo, obs, action, cfg.hparams, cfg.num_envs, cfg.seed, False)
        policy.load_policy_state(learner.policy_state())
        tracker = Tracker(cfg.window, cfg.target_return)
        self.envs = self.add(EnvReactor(env, steps=None, seed=cfg.seed, stop_when=stop_when))
        self.policy = self.add(InferenceReactor(policy, cfg.seed + 1, cfg.total_steps))
        evaluate: Callable[[Agent], float] | None = None
        if cfg.eval_every > 0:
            from reflow.rl.evaluate import evaluate_agent

            def greedy_return(agent: Agent) -> float:
                return float(
                    np.mean(evaluate_agent(agent, cfg.env_id, cfg.eval_episodes, seed=cfg.seed + 10_000))
                )

            evaluate = greedy_return
        self.learner = self.add(
            LearnerReactor(
                learner,
                cfg.total_steps,
                tracker,
                progress or (lambda steps, recent: None),
                evaluate,
                cfg.eval_every,
            )
        )
        self.connect(self.envs.obs, self.policy.obs)
        self.connect(self.policy.actions, self.envs.actions, after=0)
        self.connect(self.envs.step_out, self.learner.step)
        self.connect(self.policy.acted, self.learner.acted, after=0)
        self.connect(self.learner.weights, self.policy.weights)
        self.connect(self.learner.done, self.policy.done)

    def result(self, seconds: float) -> TrainResult:
        """The learner's agent, step count and learning curve after the run."""
        t = self.learner.tracker
        return TrainResult(
            self.learner.agent,
            self.learner.steps,
            seconds,
            t.reached(),
            t.curve,
            t.returns,
            t.evals,
            t.best[1] if t.best is not None else None,
        )


def train(cfg: TrainConfig, progress: Progress | None = None) -> TrainResult:
    """Run ``cfg`` to ``total_steps`` env steps or until the recent mean return reaches ``target_return``."""
    from reflow.rl import make_vec
    from reflow.rl.atari import env_for

    _validate(cfg)
    env_id, kwargs = env_for(cfg.env_id)
    with make_vec(
        env_id,
        cfg.num_envs,
        num_workers=cfg.num_workers,
        seed=cfg.seed,
        autoreset_mode=AutoresetMode.SAME_STEP,
        fit_workers=cfg.fit_workers,
        backend=cfg.backend,
        ray_address=cfg.ray_address,
        env_kwargs=kwargs,
    ) as env:
        return train_on(env, cfg, progress)


def train_on(env: VecEnv, cfg: TrainConfig, progress: Progress | None = None) -> TrainResult:
    """Run the training program of ``cfg`` on an open vector env (``cfg.env_id`` and ``num_workers`` are not
    used). ``env`` must reset in gymnasium's ``SAME_STEP`` autoreset mode and put episode statistics in its
    infos, like ``make_vec(..., autoreset_mode=AutoresetMode.SAME_STEP)``.

    With ``algo="dqn"`` this is synchronized parallel Q-learning: ``num_envs`` env actors stepped in lock
    step, one learner, synchronous updates; any env transport with the vector env interface can be plugged
    in (the benchmarks compare reflow's env bank with Ray actors this way).
    """
    _validate(cfg)
    if env.num_envs != cfg.num_envs:
        raise TrainConfigError(
            f"the env has {env.num_envs} sub-envs but the config asks for num_envs="
            f"{cfg.num_envs}; make them equal"
        )
    threads = torch.get_num_threads()
    det = torch.are_deterministic_algorithms_enabled()
    fill = torch.utils.deterministic.fill_uninitialized_memory  # type: ignore[attr-defined]
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    # Deterministic mode also fills every new uninitialised tensor with NaN, a debugging aid for kernels
    # that read memory they did not write (none here: runs are bit-identical without it). Off, it saves a
    # write of every intermediate tensor: 3-7% of a SAC / DQN step.
    torch.utils.deterministic.fill_uninitialized_memory = False  # type: ignore[attr-defined]
    try:
        with first_interrupt_stops() as interrupted:
            program = TrainProgram(cfg, env, progress, stop_when=interrupted.is_set)
            t0 = time.perf_counter()
            run(program)
        result = program.result(time.perf_counter() - t0)
        result.interrupted = interrupted.is_set()
        return result
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(det)
        torch.utils.deterministic.fill_uninitialized_memory = fill  # type: ignore[attr-defined]
