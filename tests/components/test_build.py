"""The staged build: the graph it records, the variables it makes, and its errors for bad input (each names
the component and the API method)."""

from __future__ import annotations

import gymnasium as gym
import pytest
import torch

from reflow.components import (
    MLP,
    CategoricalHead,
    Component,
    Spec,
    ValueHead,
    api,
    build,
    from_space,
)
from reflow.errors import ComponentError, ComponentSpaceError, MissingInputError
from reflow.graph import topo_order, verify
from reflow.rl.algos import AGENTS, make_agent

CARTPOLE = (Spec((4,)), Spec((), "int64", n=2))


class Policy(Component):
    """A small composite: torso -> head -> greedy, plus a value path sharing the torso."""

    def __init__(self, action: Spec, torso: Component | None = None) -> None:
        super().__init__("policy")
        self.torso = torso or MLP("torso", (8,))
        self.head = CategoricalHead("head", action)
        self.value = ValueHead("value")
        self.add(self.torso, self.head, self.value)

    @api
    def act(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = self.torso(obs)
        return self.head.greedy(self.head(f)), self.value(f)

    @api
    def score(self, obs: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        return self.value(self.torso(obs)) * scale  # glue code between API calls


def test_build_records_the_dataflow_graph() -> None:
    p = Policy(CARTPOLE[1])
    built = build(p, {"act": {"obs": CARTPOLE[0]}, "score": {"obs": CARTPOLE[0], "scale": Spec(())}})
    g = built.graph
    verify(g)
    assert g.names[:5] == [
        "act:obs",
        "policy/torso.forward",
        "policy/head.forward",
        "policy/head.greedy",
        "policy/value.forward",
    ]
    edges = {(e.src, e.dst) for e in g.edges}
    assert {
        ("act:obs", "policy/torso.forward"),
        ("policy/torso.forward", "policy/head.forward"),
        ("policy/torso.forward", "policy/value.forward"),
        ("policy/head.greedy", "act:out0"),
        ("policy/value.forward", "act:out1"),
    } <= edges
    # the multiplication in `score` is glue: fed by the value call and the input, feeding the output
    assert ("policy/value.forward#2", "policy.score.glue") in edges and (
        "policy.score.glue",
        "score:out",
    ) in edges
    assert len(topo_order(g)) == len(g)  # acyclic
    torso = g.node("policy/torso.forward")
    assert torso.attrs["inputs"] == {"x": "Box(4,) float32"} and torso.attrs["outputs"] == {
        "out": "Box(8,) float32"
    }
    assert next(e for e in g.edges if e.dst == "policy/head.forward").size == 8 * 4  # bytes per item
    # variables exist only now, sized from the inferred specs
    assert p.head.module is not None and p.head.module.weight.shape == (2, 8)
    assert sorted(p.state_dict()) == [
        "head:bias",
        "head:weight",
        "torso:0.bias",
        "torso:0.weight",
        "value:bias",
        "value:weight",
    ]


def test_every_agent_builds_an_acyclic_graph_and_draws() -> None:
    from reflow.graph import to_svg

    for algo, env_id in (
        ("ppo", "CartPole-v1"),
        ("ppo", "Pendulum-v1"),
        ("dqn", "Acrobot-v1"),
        ("sac", "Pendulum-v1"),
    ):
        env = gym.make(env_id)
        agent = make_agent(
            algo,
            from_space(env.observation_space),
            from_space(env.action_space),
            AGENTS[algo][1](),
            2,
            0,
            True,
        )
        assert agent.built is not None
        g = agent.built.graph
        verify(g)
        assert any(n.op == "component.api" and n.attrs["class"] == "Optimizer" for n in g)
        assert to_svg(g).startswith("<svg")


def test_same_seed_same_weights_whatever_the_build_order() -> None:
    a, b = Policy(CARTPOLE[1]), Policy(CARTPOLE[1])
    build(a, {"act": {"obs": CARTPOLE[0]}}, seed=3)
    build(b, {"score": {"obs": CARTPOLE[0], "scale": Spec(())}, "act": {"obs": CARTPOLE[0]}}, seed=3)
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())
    c = Policy(CARTPOLE[1])
    build(c, {"act": {"obs": CARTPOLE[0]}}, seed=4)
    assert not torch.equal(c.state_dict()["torso:0.weight"], a.state_dict()["torso:0.weight"])


def test_wrong_input_space_names_component_and_method() -> None:
    with pytest.raises(
        ComponentSpaceError,
        match=r"'policy/torso' \(MLP\), API method 'forward': input 'x' is "
        r"Box\(84,84,4\) uint8.*use NatureCNN",
    ):
        build(Policy(CARTPOLE[1]), {"act": {"obs": Spec((84, 84, 4), "uint8")}})
    with pytest.raises(
        ComponentSpaceError,
        match=r"'policy/head' \(CategoricalHead\) needs a Discrete action "
        r"space, the env's is Box\(1,\) float32",
    ):
        build(Policy(from_space(gym.make("Pendulum-v1").action_space)), {"act": {"obs": Spec((3,))}})


def test_dqn_on_a_box_fails_at_build_naming_the_q_head() -> None:
    env = gym.make("Pendulum-v1")
    with pytest.raises(
        ComponentSpaceError, match=r"component 'dqn/q' \(QHead\) needs a Discrete action space"
    ):
        make_agent(
            "dqn",
            from_space(env.observation_space),
            from_space(env.action_space),
            AGENTS["dqn"][1](),
            1,
            0,
            True,
        )


def test_shape_mismatch_between_connected_components() -> None:
    """A torso built for 4 features, then fed 6 by another caller: both shapes are named."""
    p = Policy(CARTPOLE[1])
    with pytest.raises(
        ComponentSpaceError,
        match=r"'policy/torso' \(MLP\), API method 'forward' \(called from "
        r"'policy.score'\): inputs do not match.*x: built for Box\(4,\) float32, now Box\(6,\)",
    ):
        build(p, {"act": {"obs": Spec((4,))}, "score": {"obs": Spec((6,)), "scale": Spec(())}})


def test_missing_api_input() -> None:
    with pytest.raises(
        MissingInputError,
        match=r"component 'policy' \(Policy\), API method 'score': missing a "
        r"required argument: 'scale'",
    ):
        build(Policy(CARTPOLE[1]), {"score": {"obs": CARTPOLE[0]}})


def test_unknown_method_unused_component_and_failures_inside_methods() -> None:
    with pytest.raises(
        ComponentError, match=r"no API method 'forward'; its API methods are \['act', 'score'\]"
    ):
        build(Policy(CARTPOLE[1]), {"forward": {"obs": CARTPOLE[0]}})
    p = Policy(CARTPOLE[1])
    p.add(MLP("spare"))
    with pytest.raises(ComponentError, match=r"components \['policy/spare'\] of 'policy' are never called"):
        build(p, {"act": {"obs": CARTPOLE[0]}})

    class Broken(Component):
        @api
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x @ torch.ones(3, 3)

    with pytest.raises(
        ComponentError,
        match=r"'broken' \(Broken\), API method 'forward' failed at build time on "
        r"inputs \(x: Box\(4,\) float32\): RuntimeError",
    ):
        build(Broken("broken"), {"forward": {"x": Spec((4,))}})


def test_composition_errors() -> None:
    p = Policy(CARTPOLE[1])
    with pytest.raises(ComponentError, match="already has a sub-component named 'torso'"):
        p.add(MLP("torso"))
    with pytest.raises(ComponentError, match="is already part of 'policy'"):
        Policy(CARTPOLE[1], torso=p.torso)
    with pytest.raises(ComponentError, match="must be non-empty"):
        MLP("a/b")
    with pytest.raises(ComponentError, match="unknown back end 'jax'"):
        build(Policy(CARTPOLE[1]), {"act": {"obs": CARTPOLE[0]}}, backend="jax")


def test_api_calls_after_the_build_are_plain_calls() -> None:
    p = Policy(CARTPOLE[1])
    build(p, {"act": {"obs": CARTPOLE[0]}})
    obs = torch.randn(5, 4, generator=torch.Generator().manual_seed(0))
    actions, values = p.act(obs)
    assert actions.shape == (5,) and values.shape == (5,)
    assert torch.equal(actions, p.head.module(p.torso.module(obs)).argmax(-1))  # type: ignore[misc]


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_policy_snapshot_is_the_policy_state_and_loads_into_the_same_structure_only() -> None:
    """Weights are published as snapshots of the live policy variables (collected once per build): copies
    equal to ``policy_state()`` that later in-place updates leave alone, loading into an agent whose
    variables have the same names and shapes, and refused (naming the variable) by any other."""
    obs, act = CARTPOLE
    cfg = AGENTS["ppo"][1]()
    learner = make_agent("ppo", obs, act, cfg, 2, 0, True)
    policy = make_agent("ppo", obs, act, cfg, 2, 1, False)  # another seed: other initial weights
    snap = learner.policy_snapshot()
    assert _same(snap.state_dict(), learner.policy_state())
    assert not _same(snap.state_dict(), policy.policy_state())
    policy.load_policy_snapshot(snap)
    assert _same(policy.policy_state(), learner.policy_state())
    with torch.no_grad():  # an update changes the live variables in place: the snapshot keeps its values
        learner.policy_vars().tensors[0].add_(1.0)
    assert not _same(snap.state_dict(), learner.policy_state())
    assert _same(learner.policy_snapshot().state_dict(), learner.policy_state())
    wide = make_agent("ppo", Spec((6,)), act, cfg, 2, 0, False)  # same names, other shapes
    shapes = r"variable 'normalizer/.:running.mean' has shape \(6,\), the snapshot's has \(4,\)"
    with pytest.raises(ComponentError, match=shapes):
        wide.load_policy_snapshot(snap)
    dqn = make_agent("dqn", obs, act, AGENTS["dqn"][1](), 2, 0, False)
    with pytest.raises(ComponentError, match="same config"):
        dqn.load_policy_snapshot(snap)
