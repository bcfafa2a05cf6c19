"""The standard components against independent oracles: torch.distributions for the heads, naive loops for
GAE, n-step returns and the sum tree, numpy for running statistics, hand-worked cases for the losses."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.distributions import AffineTransform, Categorical, Normal, TanhTransform, TransformedDistribution

from reflow.components import (
    GAE,
    MLP,
    CategoricalHead,
    DiagGaussianHead,
    DQNLoss,
    EntropyTuner,
    NStep,
    ObsNormalizer,
    Optimizer,
    PPOLoss,
    PrioritizedReplay,
    ReplayBuffer,
    RewardScaler,
    Spec,
    SquashedGaussianHead,
    build,
)
from reflow.components.memories import SumTree
from reflow.errors import ReplayMemoryError

GEN = torch.Generator().manual_seed(0)


def test_categorical_head_matches_torch_distributions() -> None:
    head = CategoricalHead("pi", Spec((), "int64", n=5))
    build(head, {"forward": {"features": Spec((3,))}})
    logits = torch.randn(7, 5, generator=GEN)
    dist = Categorical(logits=logits)
    actions = torch.randint(0, 5, (7,), generator=GEN)
    torch.testing.assert_close(head.log_prob(logits, actions), dist.log_prob(actions))
    torch.testing.assert_close(head.entropy(logits), dist.entropy())
    a, logp = head.sample(logits, torch.Generator().manual_seed(1))
    torch.testing.assert_close(logp, dist.log_prob(a))


def test_gaussian_heads_match_torch_distributions() -> None:
    action = Spec((2,), low=(-2.0, 0.0), high=(2.0, 1.0))
    diag = DiagGaussianHead("pi", action)
    build(diag, {"forward": {"features": Spec((3,))}})
    mean, log_std = torch.randn(6, 2, generator=GEN), 0.3 * torch.randn(6, 2, generator=GEN)
    normal = Normal(mean, log_std.exp())
    x = torch.randn(6, 2, generator=GEN)
    torch.testing.assert_close(diag.log_prob(mean, log_std, x), normal.log_prob(x).sum(-1))
    torch.testing.assert_close(diag.entropy(log_std), normal.entropy().sum(-1))

    sq = SquashedGaussianHead("pi", action)
    build(sq, {"forward": {"features": Spec((3,))}})
    scale, center = torch.tensor([2.0, 0.5]), torch.tensor([0.0, 0.5])
    oracle = TransformedDistribution(
        Normal(mean, log_std.exp()), [TanhTransform(cache_size=1), AffineTransform(center, scale)]
    )
    a, logp = sq.sample(mean, log_std, torch.Generator().manual_seed(2))
    assert bool(((a > torch.tensor([-2.0, 0.0])) & (a < torch.tensor([2.0, 1.0]))).all())
    torch.testing.assert_close(logp, oracle.log_prob(a).sum(-1), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(sq.greedy(mean), torch.tanh(mean) * scale + center)


def naive_gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    dones: torch.Tensor,
    last: torch.Tensor,
    gamma: float,
    lam: float,
) -> torch.Tensor:
    steps, envs = rewards.shape
    adv = torch.zeros(steps, envs, dtype=torch.float64)
    for e in range(envs):
        for t in range(steps):
            total, weight = 0.0, 1.0
            for k in range(t, steps):
                nxt = last[e] if k == steps - 1 else values[k + 1, e]
                live = 1.0 - float(dones[k, e])
                total += weight * (float(rewards[k, e]) + gamma * float(nxt) * live - float(values[k, e]))
                if live == 0.0:
                    break
                weight *= gamma * lam
            adv[t, e] = total
    return adv


def test_gae_matches_naive_oracle() -> None:
    gen = torch.Generator().manual_seed(3)
    rewards, values = (torch.randn(12, 4, generator=gen, dtype=torch.float64) for _ in range(2))
    dones = (torch.rand(12, 4, generator=gen) < 0.2).double()
    last = torch.randn(4, generator=gen, dtype=torch.float64)
    adv, ret = GAE("gae", 0.97, 0.9).advantages(rewards, values, dones, last)
    torch.testing.assert_close(adv, naive_gae(rewards, values, dones, last, 0.97, 0.9))
    torch.testing.assert_close(ret, adv + values)


def test_ppo_loss_unclipped_and_clipped() -> None:
    loss = PPOLoss("loss", clip=0.2, vf_coef=0.5, ent_coef=0.0)
    logp = torch.full((2,), math.log(0.5))
    adv = torch.tensor([1.0, -1.0])  # normalised: mean 0, unbiased std sqrt 2
    values, returns, ent = torch.zeros(2), torch.tensor([2.0, 0.0]), torch.full((2,), math.log(2.0))
    torch.testing.assert_close(
        loss.loss(logp, logp, adv, values, returns, ent), torch.tensor(0.5 * 0.5 * 4.0 / 2)
    )
    n = 1 / math.sqrt(2)  # old logp 0.1: ratio 5, clipped to 1.2 for the positive advantage only
    pg = PPOLoss("loss", clip=0.2, vf_coef=0.0, ent_coef=0.0)
    torch.testing.assert_close(
        pg.loss(logp, torch.full((2,), math.log(0.1)), adv, values, returns, ent),
        torch.tensor((-n * 1.2 + n * 5.0) / 2),
        rtol=1e-5,
        atol=1e-6,
    )
    pg.clip_scale = 0.5  # a schedule halves the clip range: 1.1 instead of 1.2
    torch.testing.assert_close(
        pg.loss(logp, torch.full((2,), math.log(0.1)), adv, values, returns, ent),
        torch.tensor((-n * 1.1 + n * 5.0) / 2),
        rtol=1e-5,
        atol=1e-6,
    )
    ent_only = PPOLoss("loss", 0.2, 0.0, 1.0)
    torch.testing.assert_close(
        ent_only.loss(logp, logp, adv, values, returns, ent), torch.tensor(-math.log(2.0))
    )


def test_dqn_loss_double_and_plain() -> None:
    q = torch.tensor([[1.0, 3.0], [1.0, 3.0]])
    online_next = torch.tensor([[5.0, 0.0], [5.0, 0.0]])  # prefers action 0
    target_next = torch.tensor([[10.0, 20.0], [10.0, 20.0]])  # prefers action 1
    actions, rewards, discounts = torch.tensor([0, 1]), torch.tensor([1.0, 2.0]), torch.tensor([0.5, 0.0])
    w = torch.ones(2)
    plain, td = DQNLoss("l", double=False).loss(q, online_next, target_next, actions, rewards, discounts, w)
    torch.testing.assert_close(td, torch.tensor([1.0 - 11.0, 3.0 - 2.0]))  # max target: 1 + 0.5 * 20
    torch.testing.assert_close(plain, torch.tensor((100.0 + 1.0) / 2))
    _, td = DQNLoss("l", double=True).loss(q, online_next, target_next, actions, rewards, discounts, w)
    torch.testing.assert_close(
        td, torch.tensor([1.0 - 6.0, 1.0])
    )  # target_q of the online argmax: 1 + 0.5 * 10
    weighted, _ = DQNLoss("l", double=True).loss(
        q, online_next, target_next, actions, rewards, discounts, torch.tensor([0.0, 2.0])
    )
    torch.testing.assert_close(weighted, torch.tensor(2.0 * 1.0 / 2))
    huber, _ = DQNLoss("l", double=True, huber=True).loss(
        q, online_next, target_next, actions, rewards, discounts, w
    )
    torch.testing.assert_close(huber, torch.tensor(((5 - 0.5) + 0.5) / 2))


@settings(max_examples=30, deadline=None)
@given(st.lists(st.floats(0.0, 10.0), min_size=1, max_size=40), st.integers(0, 2**31 - 1))
def test_sum_tree_against_prefix_sums(priorities: list[float], seed: int) -> None:
    tree = SumTree(len(priorities))
    p = np.array(priorities)
    tree.set(np.arange(len(p)), p)
    assert math.isclose(tree.total(), float(p.sum()), rel_tol=1e-9, abs_tol=1e-9)
    if p.sum() == 0:
        return
    u = np.random.default_rng(seed).uniform(0, p.sum(), 16)
    expected = np.searchsorted(np.cumsum(p), u, side="right")
    found = tree.find(u)
    assert all(p[i] > 0 for i in found)
    assert np.array_equal(np.minimum(found, len(p) - 1), np.minimum(expected, len(p) - 1))


def _filled(memory: ReplayBuffer, n: int) -> ReplayBuffer:
    specs = {
        "obs": Spec((1,)),
        "actions": Spec((), "int64"),
        "rewards": Spec(()),
        "next_obs": Spec((1,)),
        "discounts": Spec(()),
    }
    build(memory, {"insert": specs})
    x = torch.arange(n, dtype=torch.float32)
    memory.insert(x.unsqueeze(1), torch.arange(n), x, x.unsqueeze(1) + 1, torch.full((n,), 0.99))
    return memory


def test_replay_ring_and_uniform_sampling() -> None:
    buf = _filled(ReplayBuffer("m", capacity=3, min_capacity=1), 5)
    assert buf.size == 3 and sorted(buf.storage["obs"].squeeze(1).tolist()) == [2.0, 3.0, 4.0]
    a, b = (buf.sample(16, torch.Generator().manual_seed(0)) for _ in range(2))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert set(a["obs"].squeeze(1).tolist()) <= {2.0, 3.0, 4.0}
    torch.testing.assert_close(a["next_obs"], a["obs"] + 1)
    assert torch.equal(a["weights"], torch.ones(16))


def test_prioritized_replay_draws_by_priority_and_corrects() -> None:
    per = _filled(PrioritizedReplay("m", capacity=4, alpha=1.0, min_capacity=1), 4)
    assert isinstance(per, PrioritizedReplay)
    per.update_priorities(torch.arange(4), torch.tensor([1.0, 1.0, 2.0, 4.0]) - 1e-6)
    draws = per.sample(8000, torch.Generator().manual_seed(0))
    freq = np.bincount(draws["indices"].numpy(), minlength=4) / 8000
    np.testing.assert_allclose(freq, [1 / 8, 1 / 8, 2 / 8, 4 / 8], atol=0.02)
    w = {int(i): float(x) for i, x in zip(draws["indices"], draws["weights"], strict=True)}
    beta = 0.4
    expected = {
        i: (4 * p) ** -beta / (4 * 1 / 8) ** -beta for i, p in enumerate([1 / 8, 1 / 8, 2 / 8, 4 / 8])
    }
    assert all(math.isclose(w[i], expected[i], rel_tol=1e-4) for i in w)


def naive_nstep(
    rewards: np.ndarray, terms: np.ndarray, dones: np.ndarray, n: int, gamma: float
) -> list[tuple[int, int, float, int, float]]:
    """(env, start, return, index of the next obs, discount) for every start with n steps known."""
    steps, envs = rewards.shape
    out = []
    for t in range(steps - n + 1):
        for e in range(envs):
            ret, disc, last = 0.0, 0.0, t
            for k in range(n):
                ret += gamma**k * rewards[t + k, e]
                last, disc = t + k, gamma ** (k + 1) * (1.0 - terms[t + k, e])
                if dones[t + k, e]:
                    break
            out.append((e, t, ret, last, disc))
    return out


def test_nstep_matches_naive_returns() -> None:
    rng = np.random.default_rng(0)
    steps, envs, n, gamma = 12, 3, 3, 0.9
    rewards = rng.normal(size=(steps, envs)).astype(np.float32)
    terms = rng.random((steps, envs)) < 0.15
    dones = terms | (rng.random((steps, envs)) < 0.1)
    adder = NStep("nstep", n, gamma)
    got = []
    for t in range(steps):
        obs = torch.full((envs, 1), float(t))
        o, _, r, nxt, d = adder.push(
            obs,
            torch.arange(envs) + 10 * t,
            torch.as_tensor(rewards[t]),
            obs + 1,
            torch.as_tensor(terms[t]),
            torch.as_tensor(dones[t]),
        )
        got += [(e, int(o[e, 0]), float(r[e]), int(nxt[e, 0]) - 1, float(d[e])) for e in range(len(o))]
    want = naive_nstep(rewards, terms, dones, n, gamma)
    assert [(e, t) for e, t, *_ in got] == [(e, t) for e, t, *_ in want]
    for g, w in zip(got, want, strict=True):
        assert g[3] == w[3] and math.isclose(g[2], w[2], rel_tol=1e-5, abs_tol=1e-5)
        assert math.isclose(g[4], w[4], rel_tol=1e-6)


def test_obs_normalizer_running_stats_match_numpy() -> None:
    norm = ObsNormalizer("norm")
    build(norm, {"normalize": {"obs": Spec((3,))}})
    batches = [torch.randn(16, 3, generator=GEN) * 4 + 2 for _ in range(5)]
    for b in batches:
        norm.update(b)
    x = torch.cat(batches).double().numpy()
    assert norm.normalize(batches[0]).equal(batches[0].clamp(-10, 10))  # frozen: still the identity
    norm.freeze()
    z = norm.normalize(batches[0]).double().numpy()
    np.testing.assert_allclose(
        z,
        np.clip((batches[0].double().numpy() - x.mean(0)) / np.sqrt(x.var(0) + 1e-8), -10, 10),
        rtol=1e-4,
        atol=1e-4,
    )


@pytest.mark.parametrize("envs", [1, 3])
def test_reward_scaler_matches_closed_form_statistics(envs: int) -> None:
    """Each step's rewards are divided by the std of every discounted return so far (per env, cut at
    episode ends), counted with VecNormalize's prior (count 1e-4, mean 0, var 1): checked against that
    closed form over the whole history, for one env (the one-sample update) and several."""
    gamma, rng = 0.9, np.random.default_rng(1)
    scaler = RewardScaler("scaler", gamma)
    build(scaler, {"scale": {"rewards": Spec(()), "dones": Spec(())}})
    history: list[float] = []
    ret = np.zeros(envs)
    for _ in range(40):
        rewards = rng.normal(3.0, 2.0, envs).astype(np.float32)
        dones = (rng.random(envs) < 0.2).astype(np.float32)
        got = scaler.scale(torch.from_numpy(rewards), torch.from_numpy(dones))
        ret = ret * gamma + rewards.astype(np.float64)
        history += ret.tolist()
        x, prior = np.array(history), 1e-4
        mean = x.sum() / (prior + len(x))
        var = (prior * (1.0 + mean**2) + np.square(x - mean).sum()) / (prior + len(x))
        want = np.clip(rewards / np.sqrt(var + 1e-8), -10, 10)
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-5)
        assert got.dtype == torch.float32
        ret = ret * (1.0 - dones)


def test_replay_sized_from_memory_clear_error_when_it_cannot_fit(monkeypatch: pytest.MonkeyPatch) -> None:
    import reflow.components.memories as memories

    frames = {
        "obs": Spec((4, 84, 84), "uint8"),
        "actions": Spec((), "int64"),
        "rewards": Spec(()),
        "next_obs": Spec((4, 84, 84), "uint8"),
        "discounts": Spec(()),
    }
    per_item = 2 * 4 * 84 * 84 + 8 + 4 + 4
    monkeypatch.setattr(memories, "available_memory", lambda: 400 * per_item)  # room for 100 at 25%
    with pytest.warns(UserWarning, match="holding 100"):
        small = ReplayBuffer("memory", capacity=1_000_000, min_capacity=50)
        build(small, {"insert": frames})
    assert small.capacity == 100 and small.storage["obs"].dtype == torch.uint8
    assert small.nbytes == 100 * per_item
    with pytest.raises(
        ReplayMemoryError,
        match=r"replay buffer 'memory' cannot fit: 1000 transitions \(obs "
        r"Box\(4,84,84\) uint8.*56464 bytes each\) need 0.05 GiB.*lower buffer_size",
    ):
        build(ReplayBuffer("memory", capacity=1_000_000, min_capacity=1000), {"insert": frames})


def test_optimizer_linear_schedule_and_entropy_tuner() -> None:
    tuner = EntropyTuner("entropy", target=-1.0)
    opt = Optimizer("opt", [tuner], lr=0.1, schedule="linear")
    build(tuner, {"alpha": {"logp": Spec(())}})
    build(opt, {"step": {"loss": tuner.alpha(torch.zeros(4))[1]}})
    alpha0 = float(tuner.alpha(torch.zeros(1))[0])
    opt.progress = 0.5
    opt.step(tuner.alpha(torch.full((4,), 3.0))[1])  # logp 3 > -target: entropy too low, alpha must grow
    assert opt.opt is not None and opt.opt.param_groups[0]["lr"] == pytest.approx(0.05)
    assert float(tuner.alpha(torch.zeros(1))[0]) > alpha0


def test_optimizer_steps_bit_for_bit_as_per_tensor_adam() -> None:
    """The component's Adam (foreach) against torch's per-tensor Adam, the CPU default, on a copy of the same
    net: equal bits after steps with clipping and a linear schedule (recorded training runs depend on it)."""
    mlp = MLP("mlp", (16, 2), "tanh")
    build(mlp, {"forward": {"x": Spec((5,))}})
    opt = Optimizer("opt", [mlp], lr=3e-3, schedule="linear", max_grad_norm=0.5, eps=1e-5)
    build(opt, {"step": {"loss": mlp(torch.zeros(1, 5)).sum()}})
    assert mlp.module is not None
    oracle = copy.deepcopy(mlp.module)
    before = [p.detach().clone() for p in oracle.parameters()]
    ref = torch.optim.Adam(oracle.parameters(), lr=3e-3, eps=1e-5, foreach=False)
    gen = torch.Generator().manual_seed(1)
    for i in range(30):
        x = torch.randn(8, 5, generator=gen)
        opt.progress = i / 30
        opt.step((mlp(x) ** 2).mean())
        ref.param_groups[0]["lr"] = 3e-3 * (1 - i / 30)
        ref.zero_grad()
        (oracle(x) ** 2).mean().backward()
        torch.nn.utils.clip_grad_norm_(list(oracle.parameters()), 0.5)
        ref.step()
    pairs = list(zip(mlp.module.parameters(), oracle.parameters(), strict=True))
    assert all(torch.equal(a, b) for a, b in pairs)
    assert not any(torch.equal(a, b) for (a, _), b in zip(pairs, before, strict=True))  # all trained
