"""Training is a reactor program: its shape, the weights the learner publishes reaching the policy, the stop
handshake, and ``train_on`` with another env transport."""

from __future__ import annotations

import gymnasium as gym
import pytest
import torch
from gymnasium.vector import AutoresetMode, SyncVectorEnv
from gymnasium.wrappers.vector import RecordEpisodeStatistics

from reflow.errors import TrainConfigError
from reflow.reactor import reaction_graph_of, run
from reflow.rl import make_vec
from reflow.rl.algos import DQNAgent, DQNConfig, PPOAgent, PPOConfig
from reflow.rl.envs.reactors import EnvReactor
from reflow.rl.learners import InferenceReactor, LearnerReactor, Weights
from reflow.rl.train import TrainConfig, TrainProgram, train, train_on

PPO = TrainConfig(
    num_envs=4,
    total_steps=4 * 32 * 3,
    target_return=None,
    seed=5,
    ppo=PPOConfig(num_steps=32, epochs=2, minibatch_size=64),
)
DQN = TrainConfig(
    algo="dqn",
    num_envs=4,
    total_steps=1200,
    target_return=None,
    seed=3,
    dqn=DQNConfig(
        learning_starts=200, batch_size=32, target_update=80, train_freq=4, gradient_steps=1, hidden=(32, 32)
    ),
)


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_program_is_envs_policy_learner() -> None:
    with make_vec("CartPole-v1", 4, seed=0) as env:
        ppo = TrainProgram(PPO, env)
        assert [c.name for c in ppo.children] == ["envs", "policy", "learner"]
        assert isinstance(ppo.envs, EnvReactor) and isinstance(ppo.policy, InferenceReactor)
        assert isinstance(ppo.learner, LearnerReactor) and isinstance(ppo.learner.agent, PPOAgent)
        assert isinstance(TrainProgram(DQN, env).learner.agent, DQNAgent)
        graph = reaction_graph_of(ppo)
    assert graph.names == ["train.envs.start", "train.envs.step", "train.policy.act", "train.learner.learn"]
    # same-tag dependencies: envs -> learner -> policy; the policy's actions and its record of them reach the
    # envs and the learner one microstep later, so they are not edges here
    assert {(e.src, e.dst) for e in graph.edges} == {
        ("train.envs.start", "train.envs.step"),
        ("train.envs.start", "train.policy.act"),
        ("train.envs.step", "train.policy.act"),
        ("train.envs.step", "train.learner.learn"),
        ("train.learner.learn", "train.policy.act"),
    }
    assert ppo.policy.agent is not ppo.learner.agent  # the policy holds its own copy of the weights
    assert not ppo.policy.agent.learner and "optimizer" not in ppo.policy.agent.components


@pytest.mark.parametrize("cfg", [PPO, DQN], ids=["ppo", "dqn"])
def test_published_weights_reach_the_policy(cfg: TrainConfig) -> None:
    with make_vec("CartPole-v1", cfg.num_envs, seed=cfg.seed, autoreset_mode=AutoresetMode.SAME_STEP) as env:
        program = TrainProgram(cfg, env)
        trace = run(program, trace=True).trace
    published = [v for e in trace for k, v in e.writes if k == "train.learner.weights"]
    assert published and all(isinstance(w, Weights) for w in published)
    assert [w.version for w in published] == list(range(1, len(published) + 1))
    last = published[-1]
    assert program.policy.version == program.learner.version == last.version
    assert _same(program.policy.agent.policy_state(), last.state_dict())
    assert _same(program.learner.agent.policy_state(), last.state_dict())
    assert not _same(published[0].state_dict(), last.state_dict())  # snapshots, not views of the learner
    # the learner ended the run: the policy stopped acting, the envs stopped stepping
    steps = cfg.total_steps // cfg.num_envs
    assert program.envs.done_steps == program.policy.steps == steps == program.learner.steps // cfg.num_envs
    if cfg.algo == "ppo":
        assert len(published) == steps // cfg.ppo.num_steps  # one publication per rollout


def test_progress_reports_each_ppo_update() -> None:
    seen: list[tuple[int, float | None]] = []
    flags = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    fill = torch.utils.deterministic.fill_uninitialized_memory  # type: ignore[attr-defined]

    def report(steps: int, recent: float | None) -> None:  # inside the run: its torch settings
        assert torch.get_num_threads() == 1 and torch.are_deterministic_algorithms_enabled()
        assert not torch.utils.deterministic.fill_uninitialized_memory  # type: ignore[attr-defined]
        seen.append((steps, recent))

    r = train(PPO, report)
    assert [s for s, _ in seen] == [128, 256, 384] and r.steps == 384  # one report per update
    assert seen[-1][1] is not None
    # and the caller's settings back afterwards
    assert (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()) == flags
    assert torch.utils.deterministic.fill_uninitialized_memory == fill  # type: ignore[attr-defined]


def test_train_on_another_env_transport_gives_the_same_run() -> None:
    """Synchronized parallel Q-learning on gymnasium's own vector env equals the run on the env bank."""
    bank = train(DQN)
    env = RecordEpisodeStatistics(
        SyncVectorEnv(
            [lambda: gym.make("CartPole-v1")] * DQN.num_envs, autoreset_mode=AutoresetMode.SAME_STEP
        )
    )
    try:
        other = train_on(env, DQN)
    finally:
        env.close()
    assert other.episode_returns == bank.episode_returns and len(bank.episode_returns) > 10
    assert _same(other.agent.policy_state(), bank.agent.policy_state())
    with make_vec("CartPole-v1", 2) as small, pytest.raises(TrainConfigError, match="has 2 sub-envs"):
        train_on(small, DQN)
