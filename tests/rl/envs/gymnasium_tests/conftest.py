"""Which of gymnasium's vector-env tests do not apply to ``make_vec``, and why (skipped by name).

Every other test in the ``test_gym_*.py`` modules runs on ``make_vec`` as gymnasium wrote it.
"""

from __future__ import annotations

import pytest

FIXED_SHAPE = ("the env bank shares observations and actions as fixed-shape numpy arrays (Box, Discrete, "
               "MultiDiscrete, MultiBinary, in Dict and Tuple spaces); make_vec raises EnvError for spaces "
               "without a fixed shape, which gymnasium batches as tuples of Python objects")
# test name (without parameters), or name[parameter id] -> why it does not apply
NOT_APPLICABLE: dict[str, str] = {
    "test_metadata_sync_vector_env": "reads SyncVectorEnv.envs, the list of env objects; make_vec's envs "
    "live in worker processes (its metadata check is covered by test_autoreset_metadata)",
    "test_check_spaces_sync_vector_env": "expects SyncVectorEnv's RuntimeError text; make_vec raises "
    "EnvError naming the env whose spaces differ (tests/rl/envs/test_envbank_errors.py)",
    "test_custom_space_sync_vector_env": FIXED_SHAPE + " (a custom Space)",
}
# parameter ids of spaces the bank does not take (alone or inside a Dict or Tuple)
NO_FIXED_SHAPE = ("Text(", "Graph(", "Sequence(", "OneOf(")
# parameter ids that mark gymnasium's own AsyncVectorEnv, which these modules test too (not reflow's code)
ASYNC_IDS = ("Async", "vectoriser1", "vectoriser2", "venv_constructor1", "venv_constructor2", "vectorizer0")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        name = item.name.split("[")[0]
        reason = NOT_APPLICABLE.get(item.name) or NOT_APPLICABLE.get(name)
        params = item.name[len(name):]
        if reason is None and any(a in params for a in ASYNC_IDS) and name != "test_vector_env_equal":
            reason = "tests gymnasium's own AsyncVectorEnv, not make_vec"
        if reason is None and any(c in params for c in NO_FIXED_SHAPE):
            reason = FIXED_SHAPE
        if reason is not None:
            item.add_marker(pytest.mark.skip(reason=reason))
