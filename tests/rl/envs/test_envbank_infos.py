"""merge_infos gives exactly what gymnasium's VectorEnv._add_info gives, env by env (the oracle), on random
infos: the same keys in the same order, arrays of the same dtype and values, the same masks."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from gymnasium.vector import VectorEnv
from hypothesis import given, settings
from hypothesis import strategies as st

from reflow.rl.envs.infos import merge_infos

N = 5
scalars = st.one_of(st.integers(-5, 5), st.floats(-2, 2, allow_nan=False), st.booleans(),
                    st.integers(0, 9).map(np.int64), st.floats(0, 1).map(np.float32), st.none(),
                    st.text(max_size=2), st.integers(0, 3).map(lambda k: np.full(2, k, np.float32)))
keys = st.sampled_from(["a", "b", "lives", "x"])
flat = st.dictionaries(keys, scalars, max_size=3)
infos = st.dictionaries(st.sampled_from(["a", "b", "episode", "final_obs", "final_info"]),
                        st.one_of(scalars, flat), max_size=3)
events = st.lists(st.tuples(st.integers(0, N - 1), infos), max_size=8).map(
    lambda ev: sorted(ev, key=lambda e: e[0]))


def assert_same(a: Any, b: Any) -> None:
    assert type(a) is type(b)
    if isinstance(a, dict):
        assert list(a) == list(b)
        for k in a:
            assert_same(a[k], b[k])
    elif isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and a.shape == b.shape
        if a.dtype == object:
            for x, y in zip(a.ravel(), b.ravel(), strict=True):
                assert_same(x, y)
        else:
            np.testing.assert_array_equal(a, b)
    else:
        assert a == b or (a != a and b != b)


@settings(max_examples=300, deadline=None)
@given(events)
def test_merge_infos_is_gymnasiums_add_info(ev: list[tuple[int, dict[str, Any]]]) -> None:
    env = VectorEnv()
    env.num_envs = N
    expected: dict[str, Any] = {}
    try:
        for i, info in ev:
            expected = env._add_info(expected, info, i)
    except Exception:  # values of one key gymnasium cannot put together: it raises, and so must we
        with pytest.raises(Exception):  # noqa: B017 (which error comes first differs: keys are walked apart)
            merge_infos(ev, N, env._add_info)
        return
    assert_same(merge_infos(ev, N, env._add_info), expected)
