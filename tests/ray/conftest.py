"""One Ray cluster of three nodes on this machine for every test under tests/ray (starting one takes ~10 s).

The fixture is package-scoped: the cluster stops, and this process disconnects, once the last test here ran,
so tests elsewhere find no Ray connection left open. ``ray_nodes`` is the cluster's node list, this
process's node first."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from reflow.runtime.ray_cluster import LocalCluster, NodeInfo, connect, nodes

NODES = 3
TESTS = Path(__file__).resolve().parents[1]
# the programs the other executors are tested on
for folder in (TESTS / "runtime", TESTS / "e2e", TESTS / "reactor"):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))


@pytest.fixture(scope="package")
def ray_cluster() -> Iterator[LocalCluster]:
    with LocalCluster(nodes=NODES, cpus_per_node=1, object_store_mb=128) as cluster, \
            connect(cluster.address, log_to_driver=False):
        yield cluster


@pytest.fixture(scope="package")
def ray_nodes(ray_cluster: LocalCluster) -> list[NodeInfo]:
    return nodes()
