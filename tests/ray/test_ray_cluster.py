"""Finding a Ray cluster: connect by address, start a private local Ray, a clear error without ray."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from reflow.errors import ClusterError, RayUnavailable
from reflow.runtime.ray_cluster import LocalCluster, NodeInfo, connect, require_ray


def test_missing_ray_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # what `import ray` meets when ray is not installed
    with pytest.raises(RayUnavailable, match=r"pip install 'reflow\[ray\]'"):
        require_ray()
    with pytest.raises(RayUnavailable):
        connect()


def test_unreachable_address_fails_fast() -> None:
    with pytest.raises(ClusterError, match=r"127\.0\.0\.1:1.*ray start --head"):
        connect("127.0.0.1:1")


def test_cluster_nodes_listed_with_this_node_first(ray_cluster: LocalCluster,
                                                   ray_nodes: list[NodeInfo]) -> None:
    import ray

    assert len(ray_nodes) == 3
    assert ray_nodes[0].node_id == ray.get_runtime_context().get_node_id()
    assert all(n.cpus == 1.0 for n in ray_nodes)
    assert sum(n.is_head for n in ray_nodes) == 1
    # An open connection is reused, and closing the borrowed handle leaves it open.
    with connect() as borrowed:
        assert not borrowed.started and not borrowed.connected
    assert ray.is_initialized()


def test_local_ray_starts_with_explicit_resources_and_stops(tmp_path: os.PathLike[str]) -> None:
    # In a fresh process (this one is connected to the test cluster), as a user's script would do it.
    script = textwrap.dedent("""
        import os, ray
        from reflow.runtime.ray_cluster import connect, default_temp_dir
        with connect(num_cpus=1, object_store_mb=80) as cluster:
            (node,) = cluster.nodes()
            res = ray.cluster_resources()
            print(cluster.started, node.cpus, int(res["object_store_memory"]) >> 20)
            assert os.path.isdir(default_temp_dir())
        print(ray.is_initialized(), os.path.exists(default_temp_dir()))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "1.0", "80", "False", "False"]
