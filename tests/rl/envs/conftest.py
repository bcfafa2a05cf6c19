"""Fixtures for the env-bank tests."""

from __future__ import annotations

from multiprocessing import resource_tracker

import pytest


@pytest.fixture(autouse=True, scope="module")
def _resource_tracker_running() -> None:
    """Start Python's resource tracker up front, so ``no_leaks`` does not count it as a leaked child."""
    resource_tracker.ensure_running()
