"""Serving on Ray: the workers are actors on the nodes of a two-node ``ray.cluster_utils.Cluster`` on this
machine; answers equal ``flow.run``, lookups fetch from the server's stores, and a lost node's worker moves
to a node that is still there."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Any

from serve_pipelines import TAGS

from reflow.runtime.ray_cluster import LocalCluster
from reflow.serve import Flow
from reflow.serve.server import Server

# Generous bounds, not timings: Ray notices a lost node only after its health checks fail, which takes
# seconds here and far longer on a loaded 2-core CI machine.
HTTP_TIMEOUT_S = 300.0
REPLACED_WITHIN_S = 240.0  # under pytest's 300 s per-test timeout, so a failure names the cause


def _post(url: str, body: Any) -> tuple[int, Any]:
    req = urllib.request.Request(url + "/", data=json.dumps(body).encode(),
                                 headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=HTTP_TIMEOUT_S) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def tag_of(x: int) -> int:
    return x % 10


def test_a_flow_served_by_actors_on_two_nodes() -> None:
    flow = Flow("on_ray", {"x": int})
    flow.map(tag_of, keep=["x"]).lookup(TAGS, "tag_of", column="tag")
    with LocalCluster(nodes=2, cpus_per_node=2, object_store_mb=100) as cluster, \
            Server(flow, workers=2, ray=cluster.address, start_timeout_s=180) as srv:
        nodes = {slot.node for slot in srv.executor.slots}
        assert len(nodes) == 2  # one worker per node
        for x in range(12):
            status, body = _post(srv.url, {"x": x})
            assert status == 200 and body["rows"] == flow.run([(x,)]).to_records() == \
                [{"x": x, "tag_of": x % 10, "tag": f"tag{x % 10}"}]
        status, body = _post(srv.url, {"x": 3, "y": 1})
        assert status == 422
        lost = cluster.worker_nodes[0]
        cluster.remove_node(lost)  # a machine goes away: its worker's batches fail, the worker moves
        end = time.monotonic() + REPLACED_WITHIN_S
        while not (any(s.restarts for s in srv.executor.slots) and all(s.ready for s in srv.executor.slots)):
            status, body = _post(srv.url, {"x": 5})  # meanwhile the service keeps answering
            assert (status == 200 and body["rows"][0]["tag"] == "tag5") or \
                (status == 500 and "died" in body["error"]), body  # 500: a batch on the lost node
            assert time.monotonic() < end, "the lost worker was not replaced"
            time.sleep(0.2)
        assert len({slot.node for slot in srv.executor.slots}) == 1
        assert _post(srv.url, {"x": 7})[1]["rows"][0]["tag"] == "tag7"
