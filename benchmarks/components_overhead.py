"""Claim: agents written as component graphs cost < 5% more per update than the same algorithm in plain
PyTorch, and build in well under a second.

For PPO (CartPole: a minibatch step of 256), DQN (CartPole, 256x256 MLP: sample 64 from the replay buffer,
TD step) and SAC (Pendulum, 256x256: one full update of critics, actor and temperature), the agent's
``update`` is timed against a hand-written PyTorch function doing the same work on networks holding the same
weights, in one process, interleaved blocks of updates, one torch thread. The table gives median
microseconds per update and the ratio (component / plain) of the medians over repeats. Build times are the
median of fresh builds of each agent (after one warm-up build in the process). ``--compile`` also times
PPO's update with ``backend="compile"`` (torch.compile on every component's module; compile time
reported separately).

    flock -x /tmp/reflow-cpu.lock .venv/bin/python benchmarks/components_overhead.py [--quick] [--compile]

Writes results/components_overhead.json.
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import torch
from torch import nn

from reflow.components import Component, api, from_space
from reflow.rl.algos import AGENTS, DQNAgent, PPOAgent, SACAgent, make_agent


def agent_for(algo: str, env_id: str, backend: str = "eager", **cfg: Any) -> Any:
    env = gym.make(env_id)
    return make_agent(
        algo,
        from_space(env.observation_space),
        from_space(env.action_space),
        AGENTS[algo][1](**cfg),
        8,
        0,
        True,
        backend,
    )


def ppo_pair(backend: str = "eager") -> tuple[Callable[[], Any], Callable[[], Any]]:
    agent: PPOAgent = agent_for("ppo", "CartPole-v1", backend)
    gen = torch.Generator().manual_seed(0)
    b = {
        "obs": torch.randn(256, 4, generator=gen),
        "actions": torch.randint(0, 2, (256,), generator=gen),
        "old_logp": torch.full((256,), -0.69),
        "advantages": torch.randn(256, generator=gen),
        "returns": torch.randn(256, generator=gen),
    }
    pi = nn.Sequential(copy.deepcopy(agent.pi_torso.module), copy.deepcopy(agent.pi_head.module))
    v = nn.Sequential(copy.deepcopy(agent.v_torso.module), copy.deepcopy(agent.v_head.module))
    params = list(pi.parameters()) + list(v.parameters())
    opt = torch.optim.Adam(params, lr=1e-3, eps=1e-5)

    def plain() -> None:
        logp_all = torch.log_softmax(pi(b["obs"]), -1)
        logp = logp_all.gather(1, b["actions"].unsqueeze(1)).squeeze(1)
        ent = -(logp_all.exp() * logp_all).sum(-1)
        adv = (b["advantages"] - b["advantages"].mean()) / (b["advantages"].std() + 1e-8)
        ratio = torch.exp(logp - b["old_logp"])
        pg = torch.max(-adv * ratio, -adv * torch.clamp(ratio, 0.8, 1.2)).mean()
        loss = pg + 0.5 * 0.5 * ((v(b["obs"]).squeeze(-1) - b["returns"]) ** 2).mean() - 0.0 * ent.mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(params, 0.5)
        opt.step()

    return (lambda: agent.update(**b)), plain


def dqn_pair() -> tuple[Callable[[], Any], Callable[[], Any]]:
    agent: DQNAgent = agent_for("dqn", "CartPole-v1")
    gen = torch.Generator().manual_seed(0)
    n = 10_000
    obs = torch.randn(n, 4, generator=gen)
    agent.memory.insert(
        obs, torch.randint(0, 2, (n,), generator=gen), torch.ones(n), obs + 0.1, torch.full((n,), 0.99)
    )
    q = nn.Sequential(copy.deepcopy(agent.torso.module), copy.deepcopy(agent.q.module))
    target = copy.deepcopy(q)
    opt = torch.optim.Adam(q.parameters(), lr=2.3e-3)
    store = {k: v.clone() for k, v in agent.memory.storage.items()}
    g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)

    def plain() -> None:
        idx = torch.randint(0, n, (64,), generator=g2)
        o, a, r, no, d = (store[k][idx] for k in ("obs", "actions", "rewards", "next_obs", "discounts"))
        with torch.no_grad():
            target_q = r + d * target(no).max(1).values
        q_sa = q(o).gather(1, a.unsqueeze(1)).squeeze(1)
        loss = nn.functional.smooth_l1_loss(q_sa, target_q)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(q.parameters(), 10.0)
        opt.step()

    return (lambda: agent.update(g1)), plain


def sac_pair() -> tuple[Callable[[], Any], Callable[[], Any]]:
    agent: SACAgent = agent_for("sac", "Pendulum-v1", buffer_size=20_000)
    gen = torch.Generator().manual_seed(0)
    n = 10_000
    obs = torch.randn(n, 3, generator=gen)
    agent.memory.insert(
        obs,
        torch.rand(n, 1, generator=gen) * 4 - 2,
        torch.randn(n, generator=gen),
        obs + 0.1,
        torch.full((n,), 0.99),
    )
    actor = nn.Sequential(copy.deepcopy(agent.actor_torso.module), copy.deepcopy(agent.actor_head.module))
    q1 = nn.Sequential(copy.deepcopy(agent.q1.torso.module), copy.deepcopy(agent.q1.head.module))
    q2 = nn.Sequential(copy.deepcopy(agent.q2.torso.module), copy.deepcopy(agent.q2.head.module))
    t1, t2 = copy.deepcopy(q1), copy.deepcopy(q2)
    log_alpha = nn.Parameter(torch.zeros(()))
    opt_q = torch.optim.Adam([*q1.parameters(), *q2.parameters()], lr=1e-3)
    opt_pi = torch.optim.Adam(actor.parameters(), lr=1e-3)
    opt_a = torch.optim.Adam([log_alpha], lr=1e-3)
    store = {k: v.clone() for k, v in agent.memory.storage.items()}
    g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    scale = torch.tensor([2.0])

    def sample(o: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, log_std = actor(o).chunk(2, -1)
        log_std = log_std.clamp(-20, 2)
        u = mean + log_std.exp() * torch.randn(mean.shape, generator=g2)
        logp = (-0.5 * ((u - mean) / log_std.exp()) ** 2 - log_std - 0.9189385).sum(-1)
        logp = logp - (2 * (0.6931472 - u - nn.functional.softplus(-2 * u))).sum(-1) - torch.log(scale).sum()
        return torch.tanh(u) * scale, logp

    def plain() -> None:
        idx = torch.randint(0, n, (256,), generator=g2)
        o, a, r, no, d = (store[k][idx] for k in ("obs", "actions", "rewards", "next_obs", "discounts"))
        pa, logp = sample(o)
        alpha_loss = -(log_alpha * (logp.detach() - 1.0)).mean()
        alpha = log_alpha.exp().detach()
        opt_a.zero_grad(set_to_none=True)
        alpha_loss.backward()
        opt_a.step()
        with torch.no_grad():
            na, nlogp = sample(no)
            x = torch.cat([no, na], -1)
            target = r + d * (torch.min(t1(x), t2(x)).squeeze(-1) - alpha * nlogp)
        x = torch.cat([o, a], -1)
        critic = (
            0.5 * ((q1(x).squeeze(-1) - target) ** 2).mean()
            + 0.5 * ((q2(x).squeeze(-1) - target) ** 2).mean()
        )
        opt_q.zero_grad(set_to_none=True)
        critic.backward()
        opt_q.step()
        x = torch.cat([o, pa], -1)
        actor_loss = (alpha * logp - torch.min(q1(x), q2(x)).squeeze(-1)).mean()
        opt_pi.zero_grad(set_to_none=True)
        actor_loss.backward()
        opt_pi.step()

    return (lambda: agent.update(g1)), plain


def timed(fn: Callable[[], Any], n: int) -> tuple[float, float]:
    """Microseconds per call of ``fn`` over ``n`` calls: (wall clock, this process's CPU time). On a shared
    machine the CPU time is the steadier of the two: time spent preempted by other jobs is not in it."""
    w0, c0 = time.perf_counter(), time.process_time()
    for _ in range(n):
        fn()
    return (time.perf_counter() - w0) / n * 1e6, (time.process_time() - c0) / n * 1e6


def compare(
    name: str, pair: tuple[Callable[[], Any], Callable[[], Any]], block: int, repeats: int
) -> dict[str, Any]:
    """Interleaved blocks, the component's first in even repeats and the plain one's first in odd ones (so
    neither always runs on the cache or the scheduler slot the other left behind)."""
    comp, plain = pair
    for fn in (comp, plain):  # warm up
        timed(fn, max(2, block // 4))
    c: list[tuple[float, float]] = []
    p: list[tuple[float, float]] = []
    for rep in range(repeats):
        if rep % 2 == 0:
            c.append(timed(comp, block))
            p.append(timed(plain, block))
        else:
            p.append(timed(plain, block))
            c.append(timed(comp, block))
    out: dict[str, Any] = {"agent": name}
    for i, clock in enumerate(("wall", "cpu")):
        ci, pi = [x[i] for x in c], [x[i] for x in p]
        ratios = sorted(a / b for a, b in zip(ci, pi, strict=True))
        key = "" if clock == "wall" else "cpu_"
        out |= {
            f"{key}component_us": statistics.median(ci),
            f"{key}plain_us": statistics.median(pi),
            f"{key}ratio": statistics.median(ci) / statistics.median(pi),
            f"{key}ratio_q1": ratios[len(ratios) // 4],
            f"{key}ratio_q3": ratios[3 * len(ratios) // 4],
        }
    return out


def dispatch_us(calls: int = 200_000) -> float:
    """CPU microseconds an ``@api`` method call costs over a plain method call (the component layer's only
    per-call work after the build: a wrapper and one context-variable lookup)."""

    class Probe(Component):
        @api
        def via_api(self, x: int) -> int:
            return x

        def plain(self, x: int) -> int:
            return x

    probe = Probe("probe")
    best: dict[str, float] = {}
    for fn in (probe.via_api, probe.plain) * 3:
        t0 = time.process_time()
        for _ in range(calls):
            fn(1)
        us = (time.process_time() - t0) / calls * 1e6
        best[fn.__name__] = min(best.get(fn.__name__, us), us)
    return best["via_api"] - best["plain"]


def build_times(repeats: int) -> list[dict[str, Any]]:
    out = []
    for algo, env in (
        ("ppo", "CartPole-v1"),
        ("ppo", "Hopper-v5"),
        ("dqn", "CartPole-v1"),
        ("sac", "Pendulum-v1"),
    ):
        agent_for(algo, env)  # warm-up (the first Adam in a process imports torch._dynamo: seconds)
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            a = agent_for(algo, env)
            times.append(time.perf_counter() - t0)
        assert a.built is not None
        out.append(
            {
                "agent": f"{algo} {env}",
                "build_ms": statistics.median(times) * 1e3,
                "nodes": len(a.built.graph),
                "edges": len(a.built.graph.edges),
            }
        )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer repeats (make bench)")
    ap.add_argument("--compile", action="store_true", help="also time PPO with backend='compile'")
    args = ap.parse_args()
    torch.set_num_threads(1)
    block, repeats = (20, 5) if args.quick else (50, 15)
    builds = build_times(3 if args.quick else 7)
    rows = [
        compare("ppo minibatch 256", ppo_pair(), block, repeats),
        compare("dqn batch 64", dqn_pair(), block, repeats),
        compare("sac batch 256", sac_pair(), max(5, block // 4), repeats),
    ]
    dispatch = dispatch_us()
    compiled: dict[str, Any] = {}
    if args.compile:
        t0 = time.perf_counter()
        comp, _ = ppo_pair("compile")
        comp()
        compiled = {"compile_s": time.perf_counter() - t0}
        eager, _ = ppo_pair("eager")
        compiled.update(compare("ppo eager vs compile", (comp, eager), block, repeats))
    print(f"{'agent':28} {'build ms':>9} {'nodes':>6}")
    for b in builds:
        print(f"{b['agent']:28} {b['build_ms']:9.1f} {b['nodes']:6d}")
    print(f"\n{'update':22} {'clock':>5} {'component us':>13} {'plain us':>9} {'ratio':>7} {'IQR':>12}")
    for r in rows:
        for key, clock in (("", "wall"), ("cpu_", "cpu")):
            print(
                f"{r['agent']:22} {clock:>5} {r[key + 'component_us']:13.0f} {r[key + 'plain_us']:9.0f} "
                f"{r[key + 'ratio']:7.3f} {r[key + 'ratio_q1']:.3f}-{r[key + 'ratio_q3']:.3f}"
            )
    print(f"\n@api call over a plain method call: {dispatch:.2f} us (CPU)")
    if compiled:
        print(
            f"\ntorch.compile (PPO): compile+first call {compiled['compile_s']:.1f} s, compiled "
            f"{compiled['component_us']:.0f} us vs eager {compiled['plain_us']:.0f} us per update "
            f"(ratio {compiled['ratio']:.3f})"
        )
    out = Path("results/components_overhead.json")
    out.parent.mkdir(exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "machine": platform.platform(),
                "builds": builds,
                "updates": rows,
                "api_dispatch_us": dispatch,
                "compile": compiled,
            },
            indent=1,
        )
    )
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
