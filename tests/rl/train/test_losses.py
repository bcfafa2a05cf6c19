"""PPO and DQN losses, the replay buffer and the epsilon schedule on hand-made cases."""

from __future__ import annotations

import math

import torch

from reflow.rl.algos.dqn import DQNConfig, ReplayBuffer, dqn_loss, epsilon
from reflow.rl.algos.networks import ActorCritic, QNetwork
from reflow.rl.algos.ppo import Batch, ppo_loss


def _zero_net() -> ActorCritic:
    net = ActorCritic(obs_dim=2, n_actions=2, hidden=4, seed=0)
    for p in net.parameters():
        p.data.zero_()
    return net  # uniform policy (logp = log 0.5), value 0


def test_ppo_loss_unclipped_and_clipped() -> None:
    net = _zero_net()
    obs = torch.zeros(2, 2)
    actions = torch.tensor([0.0, 1.0])
    adv = torch.tensor([1.0, -1.0])  # already normalised: mean 0, std 1 (unbiased std of [1,-1] is sqrt2)
    returns = torch.tensor([2.0, 0.0])
    # old logprobs equal the current ones: ratio 1, policy term = -mean(adv_n) = 0
    same = Batch(obs, actions, torch.full((2,), math.log(0.5)), adv, returns)
    loss = ppo_loss(net, same, clip=0.2, vf_coef=0.5, ent_coef=0.0)
    torch.testing.assert_close(loss, torch.tensor(0.5 * 0.5 * (4.0 + 0.0) / 2))
    # old logprob much smaller: ratio = 0.5/0.1 = 5, clipped to 1.2 for the positive advantage,
    # the negative one takes the max of -a*r terms: -(-n)*5 = 5n vs 1.2n -> 5n
    old = Batch(obs, actions, torch.full((2,), math.log(0.1)), adv, returns)
    n = 1 / math.sqrt(2)
    expected_pg = (-n * 1.2 + n * 5.0) / 2
    loss = ppo_loss(net, old, clip=0.2, vf_coef=0.0, ent_coef=0.0)
    torch.testing.assert_close(loss, torch.tensor(expected_pg), rtol=1e-5, atol=1e-6)
    # entropy of a uniform 2-way policy is log 2
    loss = ppo_loss(net, same, clip=0.2, vf_coef=0.0, ent_coef=1.0)
    torch.testing.assert_close(loss, torch.tensor(-math.log(2.0)))


def test_dqn_loss_uses_target_and_cuts_terminals() -> None:
    q = QNetwork(1, 2, 4, seed=0)
    target = QNetwork(1, 2, 4, seed=1)
    for net, bias in ((q, [1.0, 3.0]), (target, [10.0, 20.0])):
        for p in net.parameters():
            p.data.zero_()
        net.net[-1].bias.data = torch.tensor(bias)  # constant Q-values
    batch = (torch.zeros(2, 1), torch.tensor([0, 1]), torch.tensor([1.0, 2.0]), torch.zeros(2, 1),
             torch.tensor([0.0, 1.0]))
    # targets: 1 + 0.5 * 20 = 11 (non-terminal), 2 (terminal); predictions 1 and 3
    expected = ((1.0 - 11.0) ** 2 + (3.0 - 2.0) ** 2) / 2
    torch.testing.assert_close(dqn_loss(q, target, batch, 0.5), torch.tensor(expected))


def test_replay_buffer_ring_and_sampling() -> None:
    buf = ReplayBuffer(capacity=3, obs_dim=1)
    for k in range(5):
        x = torch.tensor([[float(k)]])
        buf.add(x, torch.tensor([k]), torch.tensor([float(k)]), x + 1, torch.tensor([0.0]))
    assert buf.size == 3
    assert sorted(buf.obs.squeeze(1).tolist()) == [2.0, 3.0, 4.0]  # oldest two overwritten
    a = buf.sample(16, torch.Generator().manual_seed(0))
    b = buf.sample(16, torch.Generator().manual_seed(0))
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    assert set(a[0].squeeze(1).tolist()) <= {2.0, 3.0, 4.0}
    torch.testing.assert_close(a[3], a[0] + 1)


def test_epsilon_schedule() -> None:
    cfg = DQNConfig(eps_start=1.0, eps_end=0.1, eps_fraction=0.5)
    assert epsilon(0, 100, cfg) == 1.0
    assert math.isclose(epsilon(25, 100, cfg), 0.55)
    assert epsilon(50, 100, cfg) == epsilon(99, 100, cfg) == 0.1
