"""Dict, Tuple (nested), MultiDiscrete and MultiBinary spaces in make_vec, side by side with SyncVectorEnv.

Same constructors, seeds and actions on both; observations, rewards, flags and infos (``final_obs`` under
SAME_STEP among them) must be bit-equal and of the same types (dicts, tuples, dtypes), for 1 and 2 processes.
gymnasium's own composite-space vector tests run in gymnasium_tests/.
"""

from __future__ import annotations

import copy
import functools
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces
from gymnasium.utils.env_checker import data_equivalence
from gymnasium.vector import AutoresetMode, SyncVectorEnv

from reflow.errors import EnvArgumentError, EnvArgumentTypeError, EnvError
from reflow.rl import make_async, make_vec
from reflow.rl.envs.space_tree import SpaceTree


class TreeEnv(gym.Env[Any, Any]):
    """Random observations of any space, episodes of 2-6 steps, a reward that depends on every part of the
    action (so an action that arrives changed changes the rewards), infos every step."""

    def __init__(self, obs_space: spaces.Space[Any], act_space: spaces.Space[Any]) -> None:
        # Own copies: a space samples from its own generator, which envs must not share.
        self.observation_space, self.action_space = copy.deepcopy(obs_space), copy.deepcopy(act_space)
        self.t = self.length = 0

    def reset(self, *, seed: int | None = None,
              options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        super().reset(seed=seed)
        self.observation_space.seed(int(self.np_random.integers(2**31)))
        self.t, self.length = 0, int(self.np_random.integers(2, 7))
        return self.observation_space.sample(), {"length": self.length}

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        assert action in self.action_space, action
        self.t += 1
        flat = spaces.flatten(self.action_space, action).astype(np.float64)
        reward = float(self.np_random.normal()) + float(flat @ np.arange(1, len(flat) + 1))
        dtypes = [type(a).__name__ + str(getattr(a, "dtype", "")) for a in _leaves(self.action_space, action)]
        return (self.observation_space.sample(), reward, self.t >= self.length, self.t == 4,
                {"t": self.t, "action_dtypes": "/".join(dtypes)})


def _leaves(space: spaces.Space[Any], value: Any) -> list[Any]:
    return SpaceTree(space, "action").flatten(value)


BOX = spaces.Box(-1.0, 1.0, (3,), np.float32)
OBS_SPACES = {
    "Dict": spaces.Dict({"pos": BOX, "n": spaces.Discrete(4), "img": spaces.Box(0, 255, (2, 2), np.uint8)}),
    "Tuple": spaces.Tuple((spaces.Discrete(5, start=-2), spaces.Box(0.0, 1.0, (2,), np.float64))),
    "Dict-of-Tuple": spaces.Dict({
        "a": spaces.Tuple((spaces.MultiDiscrete([2, 3]), spaces.Box(-5, 5, (2,), np.int32))),
        "b": spaces.Dict({"c": spaces.MultiBinary(3), "d": spaces.Tuple((spaces.Discrete(2),))}),
    }),
    "MultiDiscrete": spaces.MultiDiscrete([[3, 4], [2, 5]]),
    "MultiBinary": spaces.MultiBinary((2, 3)),
}
ACT_SPACES = {
    "Discrete": spaces.Discrete(3),
    "Dict": spaces.Dict({"move": spaces.Discrete(3), "force": spaces.Box(-1.0, 1.0, (2,), np.float32)}),
    "Tuple": spaces.Tuple((spaces.MultiBinary(2), spaces.Box(-1.0, 1.0, (), np.float64))),
}


def constructors(obs: str, act: str, n: int = 4) -> list[Any]:
    return [functools.partial(TreeEnv, OBS_SPACES[obs], ACT_SPACES[act]) for _ in range(n)]


def batched_actions(act: str, n: int, seed: int) -> Any:
    space = gym.vector.utils.batch_space(ACT_SPACES[act], n)
    space.seed(seed)
    return space.sample()


def assert_same(ours: Any, ref: Any, what: str) -> None:
    assert data_equivalence(ours, ref, exact=True), f"{what}:\nmake_vec {ours!r}\nSyncVectorEnv {ref!r}"


def run_side_by_side(obs: str, act: str, workers: int, mode: AutoresetMode, steps: int = 24) -> None:
    ref = SyncVectorEnv(constructors(obs, act), autoreset_mode=mode)
    with make_vec(constructors(obs, act), num_workers=workers, fit_workers=False, autoreset_mode=mode,
                  seed=None) as ours:
        assert ours.observation_space == ref.observation_space
        assert ours.action_space == ref.action_space
        o, r = ours.reset(seed=7), ref.reset(seed=7)
        assert_same(o, r, "reset")
        kept = []  # batches held by the caller must stay as they were
        for t in range(steps):
            actions = batched_actions(act, 4, t)
            got, want = ours.step(actions), ref.step(copy.deepcopy(actions))
            assert_same(got, want, f"step {t}")
            kept.append((got[0], copy.deepcopy(want[0])))
            if mode == AutoresetMode.DISABLED and (want[2] | want[3]).any():
                mask = want[2] | want[3]
                assert_same(ours.reset(options={"reset_mask": mask}),
                            ref.reset(options={"reset_mask": mask}), f"masked reset {t}")
        for t, (held, was) in enumerate(kept):
            assert_same(held, was, f"held batch of step {t}")
    ref.close()


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("obs", list(OBS_SPACES))
def test_observation_spaces_match_sync_vector_env(obs: str, workers: int) -> None:
    run_side_by_side(obs, "Discrete", workers, AutoresetMode.NEXT_STEP)


@pytest.mark.parametrize("mode", [AutoresetMode.SAME_STEP, AutoresetMode.DISABLED])
@pytest.mark.parametrize("obs", ["Dict", "Dict-of-Tuple"])
def test_final_obs_and_reset_mask_match_sync_vector_env(obs: str, mode: AutoresetMode) -> None:
    """SAME_STEP's ``final_obs`` (a dict of batched leaves with its masks, as gymnasium merges it) and
    DISABLED's masked resets, which keep the other envs' observations."""
    run_side_by_side(obs, "Discrete", 2, mode)


@pytest.mark.filterwarnings("ignore:.*Casting input x")  # a scalar Box's action is a numpy scalar, as in
@pytest.mark.parametrize("workers", [1, 2])                # SyncVectorEnv: Box.contains warns on both sides
@pytest.mark.parametrize("act", ["Dict", "Tuple"])
def test_composite_actions_match_sync_vector_env(act: str, workers: int) -> None:
    """Each part of a Dict / Tuple action reaches the env with the caller's value and dtype (the env reports
    the dtypes it saw in its infos)."""
    run_side_by_side("Tuple", act, workers, AutoresetMode.SAME_STEP)


def test_action_dtypes_reach_the_env_per_leaf() -> None:
    ref = SyncVectorEnv(constructors("Dict", "Dict", 2))
    with make_vec(constructors("Dict", "Dict", 2), num_workers=2, fit_workers=False, seed=None) as ours:
        ours.reset(seed=1)
        ref.reset(seed=1)
        force = np.array([[0.5, -0.5], [0.25, 1.0]], np.float16)
        actions = {"move": np.array([2, 0], np.int32), "force": force}
        got, want = ours.step(actions), ref.step(actions)
        assert_same(got, want, "step")
        assert list(got[4]["action_dtypes"]) == ["ndarrayfloat16/int32int32"] * 2  # force, move
    ref.close()


def test_batches_are_handed_out_without_a_copy() -> None:
    """As for a Box: a dropped batch's buffers are filled again, a held one's are not."""
    with make_vec(constructors("Dict-of-Tuple", "Discrete"), num_workers=2, fit_workers=False) as env:
        leaves = env.bank.obs_leaves
        obs, _ = env.reset()
        first = obs["a"][1]
        assert first.base is leaves[0][1]
        del obs
        obs2 = env.step(np.zeros(4, np.int64))[0]
        assert obs2["a"][1].base is leaves[1][1]  # buffer 0 is held through ``first``
        del first, obs2
        obs3 = env.step(np.zeros(4, np.int64))[0]
        assert obs3["b"]["c"].base is leaves[0][2]  # nothing holds buffer 0 any more


@pytest.mark.parametrize("obs", ["Dict", "MultiBinary"])
def test_make_async_gives_the_same_observations(obs: str) -> None:
    ref = SyncVectorEnv(constructors(obs, "Discrete"))
    specs = constructors(obs, "Discrete")
    gym.register("reflow-test/Tree-v0", entry_point=lambda: specs[0]())
    try:
        tree = SpaceTree(OBS_SPACES[obs])

        def in_env_order(o: Any, ids: np.ndarray[Any, Any]) -> Any:  # slices come back as they finish
            return tree.unflatten([leaf[np.argsort(ids)] for leaf in tree.flatten(o)])

        with make_async("reflow-test/Tree-v0", 4, num_workers=2, seed=3, batch_size=4) as env:
            env.async_reset()
            o, _, _, _, info = env.recv()
            ids = info["env_id"]
            assert sorted(ids) == [0, 1, 2, 3]
            assert_same(in_env_order(o, ids), ref.reset(seed=3)[0], "reset")
            actions = np.array([0, 1, 2, 1])
            env.send(actions[ids], ids)
            o, r, _, _, info = env.recv()
            want = ref.step(actions)
            assert_same(in_env_order(o, info["env_id"]), want[0], "step")
            assert_same(r[np.argsort(info["env_id"])], want[1], "rewards")
    finally:
        gym.registry.pop("reflow-test/Tree-v0")
        ref.close()


def test_bad_composite_actions_are_refused_naming_the_part(no_leaks: None) -> None:
    with make_vec(constructors("Tuple", "Dict"), num_workers=2, fit_workers=False) as env:
        env.reset()
        with pytest.raises(EnvArgumentTypeError, match=r"batch of 4 actions of Dict.*KeyError: 'force'"):
            env.step({"move": np.zeros(4, np.int64)})
        with pytest.raises(EnvArgumentError, match=r"actions\['force'\] of shape \(4, 3\)"):
            env.step({"move": np.zeros(4, np.int64), "force": np.zeros((4, 3))})
        with pytest.raises(EnvArgumentTypeError, match=r"actions\['move'\] of dtype float64.*integers"):
            env.step({"move": np.zeros(4), "force": np.zeros((4, 2))})
        with pytest.raises(EnvArgumentTypeError, match="batch of 4 actions of Dict"):
            env.step(np.zeros(4, np.int64))
        env.step({"move": np.zeros(4, np.int64), "force": np.zeros((4, 2), np.float32)})  # still usable


@pytest.mark.parametrize("space, where", [
    (spaces.Dict({"a": BOX, "b": spaces.Tuple((spaces.Discrete(2), spaces.Text(4)))}), r"\['b'\]\[1\]"),
    (spaces.Sequence(BOX), ""),
    (spaces.Graph(BOX, None), ""),
    (spaces.OneOf((BOX, spaces.Discrete(2))), ""),
])
def test_spaces_without_a_fixed_shape_are_refused(space: spaces.Space[Any], where: str,
                                                   no_leaks: None) -> None:
    fns = [functools.partial(TreeEnv, space, spaces.Discrete(2)) for _ in range(2)]
    with pytest.raises(EnvError, match=rf"env .*TreeEnv.*: observation space has .*{where}.*no fixed shape"):
        make_vec(fns, num_workers=2, fit_workers=False)


class WrongObs(TreeEnv):
    """Claims a Dict space, returns a dict without one of its keys after the first step."""

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        obs, *rest = super().step(action)
        del obs["n"]
        return (obs, *rest)  # type: ignore[return-value]


def test_an_observation_not_of_its_space_is_an_env_error(no_leaks: None) -> None:
    fns = [functools.partial(WrongObs, OBS_SPACES["Dict"], spaces.Discrete(3)) for _ in range(4)]
    env = make_vec(fns, num_workers=2, fit_workers=False)
    env.reset()
    with pytest.raises(EnvError, match=r"env \d \(.*WrongObs.*KeyError: 'n'"):
        env.step(np.zeros(4, np.int64))
    env.close()


@pytest.mark.parametrize("workers", [1, 2])
def test_blackjack_by_id_matches_sync_vector_env(workers: int) -> None:
    """A registered env with a Tuple observation, made from its id as gymnasium.make_vec would."""
    ref = SyncVectorEnv([lambda: gym.make("Blackjack-v1") for _ in range(4)])
    with make_vec("Blackjack-v1", 4, num_workers=workers, fit_workers=False, episode_infos=False) as ours:
        assert_same(ours.reset(seed=11), ref.reset(seed=11), "reset")
        rng = np.random.default_rng(0)
        for t in range(40):
            actions = rng.integers(0, 2, 4)
            assert_same(ours.step(actions), ref.step(actions), f"step {t}")
    ref.close()


def test_the_guide_example_runs_and_prints_what_the_guide_says(no_leaks: None) -> None:
    text = (Path(__file__).resolve().parents[3] / "docs" / "rl.md").read_text()
    block = re.findall(r"```python\n(.*?)```", text.split("### Dict and Tuple spaces", 1)[1], re.S)[0]
    out = subprocess.run([sys.executable, "-"], input=block, capture_output=True, text=True, timeout=120,
                         check=True)
    assert out.stdout.splitlines() == ["tuple [(4,), (4,), (4,)]", "{'cart': (4, 2), 'pole': (4, 2)}"]


def fixed_shape_spaces() -> list[spaces.Space[Any]]:
    """Every space of gymnasium's own test list that the bank takes, plus this module's."""
    from gymnasium_tests.gym_testing import TESTING_SPACES

    found = []
    for space in [*TESTING_SPACES, *OBS_SPACES.values(), *ACT_SPACES.values()]:
        try:
            SpaceTree(space)
        except EnvError:
            continue
        found.append(space)
    return found


@pytest.mark.parametrize("space", fixed_shape_spaces(), ids=str)
def test_space_tree_batches_as_gymnasium_does(space: spaces.Space[Any]) -> None:
    """Oracle: gymnasium's own create_empty_array / concatenate (how SyncVectorEnv batches observations)
    and iterate (how it hands each env its action)."""
    from gymnasium.vector.utils import batch_space, concatenate, create_empty_array, iterate

    tree, n = SpaceTree(space), 5
    space = copy.deepcopy(space)
    space.seed(0)
    items = [space.sample() for _ in range(n)]
    want = concatenate(space, items, create_empty_array(space, n))
    leaves = [np.zeros((n, *leaf.shape), leaf.dtype) for leaf in tree.leaves]
    tree.put_rows(leaves, 0, n, items)
    assert_same(tree.unflatten(leaves), want, "batch")
    for k, item in enumerate(items):
        rows = [np.zeros_like(leaf) for leaf in leaves]
        tree.put(rows, k, item)
        assert all(np.array_equal(r[k], a[k]) for r, a in zip(rows, leaves, strict=True))
    per_env = [tree.unflatten(row) for row in zip(*tree.flatten(want), strict=True)]
    assert_same(per_env, list(iterate(batch_space(space, n), want)), "per env")
