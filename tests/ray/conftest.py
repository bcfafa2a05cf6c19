"""One Ray cluster of three nodes on this machine for every test under tests/ray (starting one takes ~10 s).

The cluster stops, and this process disconnects, once the last test here ran, so tests elsewhere find no Ray
connection left open (pytest keeps a "package" fixture of a directory without ``__init__.py`` until the
session ends: this process stayed a Ray driver for the rest of the suite, and another test's cluster was
quietly swapped for this one). ``ray_nodes`` is the cluster's node list, this
process's node first."""

from __future__ import annotations

import sys
from contextlib import ExitStack
from pathlib import Path

import pytest

from reflow.runtime.ray_cluster import LocalCluster, NodeInfo, connect, nodes

NODES = 3
LOST_NODE_DEAD_AFTER_S = 3.0  # the lost-node tests wait this long (not Ray's ~15 s) for a node to count dead
HERE = Path(__file__).resolve().parent
TESTS = HERE.parent
# the programs the other executors are tested on
for folder in (TESTS / "runtime", TESTS / "e2e", TESTS / "reactor"):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))


_open = ExitStack()
_cluster: LocalCluster | None = None


@pytest.fixture
def ray_cluster() -> LocalCluster:
    global _cluster
    if _cluster is None:
        _cluster = _open.enter_context(LocalCluster(nodes=NODES, cpus_per_node=1, object_store_mb=128,
                                                         dead_after_s=LOST_NODE_DEAD_AFTER_S))
        _open.enter_context(connect(_cluster.address, log_to_driver=False))
    return _cluster


@pytest.fixture
def ray_nodes(ray_cluster: LocalCluster) -> list[NodeInfo]:
    return nodes()


def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    """After the last test of this directory: disconnect and stop the cluster."""
    global _cluster
    if nextitem is None or HERE not in nextitem.path.parents:
        _open.close()
        _cluster = None
