"""One Ray cluster of three nodes on this machine for every test under tests/ray (starting one takes ~10 s).

The fixture is package-scoped: the cluster stops, and this process disconnects, once the last test here ran,
so tests elsewhere find no Ray connection left open. ``ray_nodes`` is the cluster's node list, this
process's node first."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from reflow.runtime.ray_cluster import LocalCluster, NodeInfo, connect, nodes

NODES = 3


@pytest.fixture(scope="package")
def ray_cluster() -> Iterator[LocalCluster]:
    with LocalCluster(nodes=NODES, cpus_per_node=1, object_store_mb=128) as cluster, \
            connect(cluster.address, log_to_driver=False):
        yield cluster


@pytest.fixture(scope="package")
def ray_nodes(ray_cluster: LocalCluster) -> list[NodeInfo]:
    return nodes()
