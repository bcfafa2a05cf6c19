"""Finding a Ray cluster: connect by address, start a private local Ray, a clear error without ray."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from reflow.errors import ClusterError, RayUnavailable
from reflow.runtime.ray_cluster import LocalCluster, NodeInfo, connect, require_ray

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "reactors"


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


def test_connecting_elsewhere_while_connected_is_an_error(ray_cluster: LocalCluster) -> None:
    """Ray allows one cluster per process: asking for another address must not quietly hand back the open
    connection (a server would then place its workers on the wrong cluster)."""
    port = int(ray_cluster.address.rpartition(":")[2])
    with pytest.raises(ClusterError, match=re.escape(ray_cluster.address.rpartition(":")[2])):
        connect(f"127.0.0.1:{port + 1}")
    with connect(ray_cluster.address) as same, connect(f"localhost:{port}") as same_by_name:
        assert not same.connected and not same_by_name.connected  # the open connection, borrowed


def test_reflow_run_on_a_local_ray_started_for_it() -> None:
    """``reflow run FILE --ray`` with no address and no RAY_ADDRESS: a private Ray for this run, stopped after
    it (in a fresh process, as a user runs it; this one is connected to the test cluster)."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    before = set(os.listdir(tempfile.gettempdir()))  # a killed earlier run's dir is not this run's to clean
    out = subprocess.run([sys.executable, "-m", "reflow.cli", "run", str(EXAMPLES / "pipeline.py"), "--ray"],
                         capture_output=True, text=True, timeout=180, env=env)
    assert out.returncode == 0, out.stderr
    assert re.search(r"reflow run: main stopped at tag .* Ray: \d reactor group\(s\) on 1 of 1 node\(s\)",
                     out.stdout), out.stdout
    left = set(os.listdir(tempfile.gettempdir())) - before
    assert not [d for d in left if d.startswith("ray-reflow-")]  # the finished run left no temp dir
