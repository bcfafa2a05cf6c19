"""Fixtures for the training tests."""

from __future__ import annotations

from multiprocessing import resource_tracker

import pytest


@pytest.fixture(autouse=True, scope="session")
def _resource_tracker_running() -> None:
    """Start Python's resource tracker up front (tqdm's lock starts it lazily), so ``no_leaks`` does not count
    it as a child the test leaked."""
    resource_tracker.ensure_running()
