"""Claim: batched multi-agent inference in reflow beats Ray actors (one per agent) by a wide margin.

N agents (8..64) of a PettingZoo-style parallel env (``reflow.rl.envs.swarm.SwarmEnv``) share one policy, a
small MLP (6 -> 64 -> 64 -> 5). Each round, every system turns the same observation dict into an action per
agent:

* ``reflow``      ``MultiAgentInference``: the agents' observations gathered, one batched forward pass,
                  actions scattered back (all in this process);
* ``loop``        one forward pass per agent in this process (no batching; shows what batching alone buys);
* ``ray``         one Ray actor per agent holding its own copy of the policy, one ``act.remote`` per agent and
                  a ``ray.get`` of all (the usual Ray way).

Latency is the median time of one round (all agents) over interleaved repeats; throughput is agent actions
per second (N / latency). The env is stepped between rounds with reflow's actions, so every system sees the
same, changing observations. Writes results/rl_multiagent_inference.json and .png.

    flock /tmp/reflow-bench.lock .venv/bin/python benchmarks/rl_multiagent_inference.py          # full run
    flock /tmp/reflow-bench.lock .venv/bin/python benchmarks/rl_multiagent_inference.py --quick  # short run
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from reflow.rl.envs.inference import BatchedPolicy, MultiAgentInference
from reflow.rl.envs.swarm import SwarmEnv


def make_policy_model(seed: int = 0) -> torch.nn.Module:
    gen = torch.Generator().manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(6, 64), torch.nn.Tanh(), torch.nn.Linear(64, 64),
                                torch.nn.Tanh(), torch.nn.Linear(64, 5))
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
    return model


def make_ray_agent_class() -> Any:
    import ray

    @ray.remote(num_cpus=0)
    class Agent:
        def __init__(self, state: dict[str, Any]) -> None:
            torch.set_num_threads(1)
            self.model = make_policy_model()
            self.model.load_state_dict(state)
            self.model.eval()

        def act(self, obs: np.ndarray[Any, Any]) -> int:
            with torch.inference_mode():
                return int(self.model(torch.from_numpy(obs)[None]).argmax())

    return Agent


def bench(n: int, rounds: int, repeats: int, agent_cls: Any) -> dict[str, Any]:
    env = SwarmEnv(num_chasers=n // 2, num_runners=n - n // 2, max_steps=10**9)
    obs, _ = env.reset(seed=0)
    model = make_policy_model()
    reflow = MultiAgentInference({"all": BatchedPolicy(model)}, group_of=lambda a: "all")

    def loop(o: dict[str, Any]) -> dict[str, int]:
        with torch.inference_mode():
            return {a: int(model(torch.from_numpy(x)[None]).argmax()) for a, x in o.items()}

    systems: dict[str, Any] = {"reflow": reflow.act, "loop": loop}
    actors: list[Any] = []
    if agent_cls is not None:
        import ray

        state = {k: v.clone() for k, v in model.state_dict().items()}
        actors = [agent_cls.remote(state) for _ in env.possible_agents]
        ray.get([a.act.remote(obs[name]) for a, name in zip(actors, env.possible_agents, strict=True)])

        def ray_act(o: dict[str, Any]) -> dict[str, int]:
            refs = [a.act.remote(o[name]) for a, name in zip(actors, env.possible_agents, strict=True)]
            return dict(zip(env.possible_agents, ray.get(refs), strict=True))

        systems["ray"] = ray_act
    times: dict[str, list[float]] = {k: [] for k in systems}
    try:
        for _ in range(repeats):
            for _ in range(rounds):
                chosen: dict[str, dict[str, int]] = {}
                for name, act in systems.items():
                    t0 = time.perf_counter()
                    chosen[name] = act(obs)
                    times[name].append(time.perf_counter() - t0)
                for name, actions in chosen.items():
                    assert actions == chosen["reflow"], f"{name} chose different actions than reflow"
                obs, *_ = env.step(chosen["reflow"])
    finally:
        if actors:
            import ray

            for a in actors:
                ray.kill(a)
    latency = {k: statistics.median(v) for k, v in times.items()}
    return {"agents": n, "latency_s": latency, "actions_per_s": {k: n / v for k, v in latency.items()},
            "reflow_vs_ray": latency["ray"] / latency["reflow"] if "ray" in latency else None,
            "reflow_vs_loop": latency["loop"] / latency["reflow"]}


def plot(results: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    xs = [r["agents"] for r in results]
    for name in results[0]["latency_s"]:
        ax.plot(xs, [1e3 * r["latency_s"][name] for r in results], marker="o", label=name)
    ax.set(xlabel="agents", ylabel="latency per round (ms)", xscale="log", yscale="log",
           title="multi-agent inference, one shared policy")
    ax.set_xticks(xs, [str(x) for x in xs])
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="8 and 16 agents, fewer rounds")
    parser.add_argument("--agents", nargs="*", type=int, default=[8, 16, 32, 64])
    parser.add_argument("--rounds", type=int, default=20, help="rounds per repeat")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-ray", action="store_true")
    parser.add_argument("--out", type=Path, default=Path("results"))
    args = parser.parse_args()
    if args.quick:
        args.agents, args.rounds, args.repeats = [8, 16], 10, 3
    torch.set_num_threads(1)
    agent_cls = None
    if not args.no_ray:
        import ray

        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, logging_level="ERROR", log_to_driver=False)
        agent_cls = make_ray_agent_class()
    results = [bench(n, args.rounds, args.repeats, agent_cls) for n in tqdm(args.agents, desc="agents")]
    names = list(results[0]["latency_s"])
    print(f"\n{'agents':>6} " + "".join(f"{k + ' ms':>12}" for k in names) + f"{'reflow/s':>12}"
          + f"{'vs loop':>9}{'vs ray':>9}")
    for r in results:
        vs_ray = f"{r['reflow_vs_ray']:.1f}x" if r["reflow_vs_ray"] else "-"
        print(f"{r['agents']:>6} " + "".join(f"{1e3 * r['latency_s'][k]:>12.3f}" for k in names)
              + f"{r['actions_per_s']['reflow']:>12.0f}{r['reflow_vs_loop']:>8.1f}x{vs_ray:>9}")
    args.out.mkdir(parents=True, exist_ok=True)
    meta = {"cpus": os.cpu_count(), "rounds": args.rounds, "repeats": args.repeats, "quick": args.quick}
    payload = json.dumps({"meta": meta, "results": results}, indent=1)
    (args.out / "rl_multiagent_inference.json").write_text(payload)
    plot(results, args.out / "rl_multiagent_inference.png")
    print(f"wrote {args.out / 'rl_multiagent_inference.json'} and {args.out / 'rl_multiagent_inference.png'}")


if __name__ == "__main__":
    main()
