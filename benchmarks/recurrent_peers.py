"""The peers of benchmarks/recurrent_*.py: the same algorithms hand-written CleanRL-style in eager PyTorch.

Each matches its recurrent-tensor twin in examples/recurrent (same env bank, networks, initialization, loss,
optimizer, hyper-parameters); only the sampling noise comes from torch's generator instead of the program's
counter-based one. ``compiled=True`` wraps the networks in ``torch.compile`` (CleanRL's way of using it).
Every function returns the wall time of each iteration and the logged episode returns.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from reflow.recurrent.nn import orthogonal
from reflow.rl import make_vec


def mlp(sizes: list[int], seed: int, out_gain: float) -> nn.Sequential:
    """The MLP of reflow.recurrent.nn.MLP, with the same orthogonal initialization from the same seed."""
    gen = torch.Generator().manual_seed(seed)
    layers: list[nn.Module] = []
    for k, (a, b) in enumerate(itertools.pairwise(sizes)):
        lin = nn.Linear(a, b)
        gain = out_gain if k == len(sizes) - 2 else 2.0 ** 0.5
        with torch.no_grad():
            lin.weight.copy_(orthogonal((a, b), gain, gen, torch.float32).T)
            lin.bias.zero_()
        layers += [lin, nn.Tanh()] if k < len(sizes) - 2 else [lin]
    return nn.Sequential(*layers)


def _maybe_compile(net: nn.Module, compiled: bool) -> Callable[[torch.Tensor], torch.Tensor]:
    return torch.compile(net) if compiled else net  # type: ignore[return-value]


def reinforce(env_id: str, num_envs: int, episode_len: int, iterations: int, n: int | None = None,
              gamma: float = 0.99, lr: float = 1e-2, hidden: int = 32, seed: int = 0, compiled: bool = False,
              **env_kwargs: Any) -> dict[str, Any]:
    """REINFORCE with Monte-Carlo (``n=None``) or n-step returns; one episode per env per iteration."""
    torch.manual_seed(seed)
    times, rets = [], []
    with make_vec(env_id, num_envs, seed=seed, **env_kwargs) as vec:
        obs_dim = int(np.prod(vec.single_observation_space.shape))
        net = mlp([obs_dim, hidden, int(vec.single_action_space.n)], seed, 0.01)
        policy = _maybe_compile(net, compiled)
        opt = torch.optim.Adam(net.parameters(), lr)
        for i in range(iterations):
            start = time.perf_counter()
            obs, _ = vec.reset(seed=seed + i * num_envs)
            logps, rewards, dones = [], [], []
            for _ in range(episode_len):
                logits = policy(torch.from_numpy(obs).reshape(num_envs, -1))
                dist = torch.distributions.Categorical(logits=logits)
                act = dist.sample()
                logps.append(dist.log_prob(act))
                obs, r, term, trunc, _ = vec.step(act.numpy())
                rewards.append(torch.from_numpy(r).float())
                dones.append(torch.from_numpy(term | trunc).float())
            done = torch.stack(dones)
            alive = torch.cat([torch.ones(1, num_envs), (done.cumsum(0)[:-1] == 0).float()])
            reward = torch.stack(rewards) * alive
            ret = torch.zeros_like(reward)
            acc = torch.zeros(num_envs)
            if n is None:
                for t in reversed(range(episode_len)):
                    acc = reward[t] + gamma * acc
                    ret[t] = acc
            else:
                for k in range(n):
                    ret[: episode_len - k] += gamma ** k * reward[k:]
            loss = -(torch.stack(logps) * ret * alive).sum() / num_envs
            opt.zero_grad()
            loss.backward()
            opt.step()
            times.append(time.perf_counter() - start)
            rets.append(float(reward.sum()) / num_envs)
    return {"seconds": times, "returns": rets}


def ppo(env_id: str, num_envs: int, steps: int, epochs: int, iterations: int, gamma: float = 0.99,
        lam: float = 0.95, lr: float = 1e-3, clip: float = 0.2, ent_coef: float = 0.01, vf_coef: float = 0.5,
        hidden: int = 64, seed: int = 0, compiled: bool = False, **env_kwargs: Any) -> dict[str, Any]:
    """CleanRL's PPO (clipped, GAE, envs running across rollouts) with full-batch epochs, as in ppo.py."""
    torch.manual_seed(seed)
    times, rets = [], []
    with make_vec(env_id, num_envs, seed=seed, autoreset_mode="SameStep", **env_kwargs) as vec:
        obs_dim = int(np.prod(vec.single_observation_space.shape))
        n_act = int(vec.single_action_space.n)
        actor, critic = mlp([obs_dim, hidden, hidden, n_act], seed, 0.01), mlp([obs_dim, hidden, hidden, 1],
                                                                                 seed + 1, 1.0)
        act_fn, val_fn = _maybe_compile(actor, compiled), _maybe_compile(critic, compiled)
        params = list(actor.parameters()) + list(critic.parameters())
        opt = torch.optim.Adam(params, lr, eps=1e-8)
        obs_np, _ = vec.reset(seed=seed)
        for _ in range(iterations):
            start = time.perf_counter()
            obs_b, act_b, logp_b, val_b, rew_b, done_b, ep = [], [], [], [], [], [], []
            with torch.no_grad():
                for _ in range(steps):
                    obs = torch.from_numpy(obs_np).reshape(num_envs, -1).float()
                    dist = torch.distributions.Categorical(logits=act_fn(obs))
                    act = dist.sample()
                    obs_b.append(obs)
                    act_b.append(act)
                    logp_b.append(dist.log_prob(act))
                    val_b.append(val_fn(obs).squeeze(-1))
                    obs_np, r, term, trunc, info = vec.step(act.numpy())
                    rew_b.append(torch.from_numpy(r).float())
                    done_b.append(torch.from_numpy(term | trunc).float())
                    if "episode" in info:
                        ep += list(info["episode"]["r"][info["_episode"]])
                last = val_fn(torch.from_numpy(obs_np).reshape(num_envs, -1).float()).squeeze(-1)
                values, rewards, dones = torch.stack(val_b), torch.stack(rew_b), torch.stack(done_b)
                adv = torch.zeros_like(rewards)
                acc = torch.zeros(num_envs)
                for t in reversed(range(steps)):
                    nxt = last if t == steps - 1 else values[t + 1]
                    delta = rewards[t] + gamma * nxt * (1 - dones[t]) - values[t]
                    acc = delta + gamma * lam * (1 - dones[t]) * acc
                    adv[t] = acc
                ret = adv + values
            obs_all, act_all, old_logp = torch.cat(obs_b), torch.cat(act_b), torch.cat(logp_b)
            adv_all, ret_all = adv.reshape(-1), ret.reshape(-1)
            norm = (adv_all - adv_all.mean()) / (adv_all.std() + 1e-8)
            for _ in range(epochs):
                dist = torch.distributions.Categorical(logits=act_fn(obs_all))
                ratio = (dist.log_prob(act_all) - old_logp).exp()
                pg = -torch.min(ratio * norm, ratio.clamp(1 - clip, 1 + clip) * norm)
                v_err = val_fn(obs_all).squeeze(-1) - ret_all
                loss = (pg + vf_coef * v_err * v_err - ent_coef * dist.entropy()).mean()
                opt.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(params, 0.5)
                opt.step()
            times.append(time.perf_counter() - start)
            rets.append(float(np.mean(ep)) if ep else 0.0)
    return {"seconds": times, "returns": rets}
