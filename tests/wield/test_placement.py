"""The placement env: its makespan is reflow.graph.simulate's for the same clustering, its return is
-makespan / critical path, it passes gymnasium's env checker, and reflow's own placement beats random."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from reflow.graph import simulate
from reflow.wield.placement import GraphPlacementEnv, baseline, onnx_graphs, random_dag


def _play(env: GraphPlacementEnv, seed: int, choose: str) -> tuple[float, dict[str, float]]:
    obs, _ = env.reset(seed=seed)
    rng = np.random.default_rng(seed)
    total, done, info = 0.0, False, {}
    while not done:
        assert env.observation_space.contains(obs)
        n = env.order[env.t]
        a = int(rng.integers(env.workers)) if choose == "random" else int(np.argmin(env._starts(n)))
        obs, r, done, _, info = env.step(a)
        total += r
    return total, info


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_makespan_is_the_simulated_one(seed: int) -> None:
    env = GraphPlacementEnv(workers=3, nodes=25)
    ret, info = _play(env, seed, "random")
    assert info["makespan"] == pytest.approx(simulate(env.graph, env.clustering(), env.graph_comm).makespan)
    assert ret == pytest.approx(-info["makespan"] / info["critical_path"])
    assert ret <= -1.0 + 1e-9  # the critical path bounds the makespan from below
    assert info["baseline"] == pytest.approx(baseline(env.graph, 3, env.graph_comm))


def test_reflow_placement_beats_random_and_env_is_seeded() -> None:
    env = GraphPlacementEnv(workers=4, nodes=30)
    ratios = [info["makespan"] / info["baseline"] for info in (_play(env, s, "random")[1] for s in range(8))]
    assert np.median(ratios) > 1.2  # critical-path clustering + merge is much better than random
    a, b = random_dag(np.random.default_rng(5), 20), random_dag(np.random.default_rng(5), 20)
    assert [(n.name, n.cost) for n in a] == [(n.name, n.cost) for n in b] and a.edges == b.edges


def test_gymnasium_env_checker_and_registry() -> None:
    check_env(GraphPlacementEnv(workers=2, nodes=10), skip_render_check=True)
    env = gym.make("reflow.wield.placement:reflow/GraphPlacement-v0", workers=2, nodes=8)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (12,)
    with pytest.raises(gym.error.InvalidAction, match="not a worker"):
        env.step(5)


def test_onnx_model_graphs() -> None:
    (g, comm), = onnx_graphs(["squeezenet"])
    env = GraphPlacementEnv(workers=2, graphs=[(g, comm)])
    ret, info = _play(env, 0, "eft")
    assert len(env.order) == len(g) and info["makespan"] > 0 and ret <= -1.0 + 1e-9
