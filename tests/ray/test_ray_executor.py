"""The Ray executor: the same trace as the thread executor with reactors on 2-3 nodes, faults named.

Every test runs on the package's three-node ``LocalCluster`` (tests/ray/conftest.py). Programs are the ones
the other executors are tested on: the reactor examples, the process executor's fan-out of 400 KB arrays,
and the determinism test's wide program of stateful, randomly slow reactors with a feedback loop."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from process_programs import Fan, Forever
from ray_programs import EXAMPLES, comparable, round_robin, scatter
from test_reactor_determinism import Wide

from reflow.errors import NodeLost
from reflow.reactor import Reactor, run
from reflow.reactor.commands import load_main
from reflow.runtime import ThreadExecutor
from reflow.runtime.ray_cluster import LocalCluster, NodeInfo
from reflow.runtime.ray_executor import RayExecutor
from reflow.runtime.ray_placement import Site
from reflow.runtime.tag import Tag
from reflow.transport.shm import leaked_segments, process_alive

TAGS = 5


def same_trace(make: Callable[[], Reactor], timeout: int | None, **options: Any) -> RayExecutor:
    """Run ``make()`` with one thread and on Ray with ``options``; assert equal traces; return the executor.

    ``options["pin"]`` may be a function of the program, to pin by its reactors' paths."""
    reference = comparable(run(make(), executor=ThreadExecutor(1), timeout=timeout, trace=True).trace)
    assert reference
    main = make()
    if callable(options.get("pin")):
        options["pin"] = options["pin"](main)
    ex = RayExecutor(**options)
    assert comparable(run(main, executor=ex, timeout=timeout, trace=True).trace) == reference
    return ex


def test_arrays_cross_nodes_as_refs_and_stay_in_shared_memory_inside_one(ray_nodes: list[NodeInfo]) -> None:
    # gen and stages 0, 1 on node 1, in two groups (shared memory between them); stage 2 on node 2; the sink
    # stays in this process
    ex = same_trace(lambda: Fan(3), TAGS, groups_per_node=2, local=["main"],
                    pin={"main.gen": 1, "main.stages[0]": 1, "main.stages[1]": 1, "main.stages[2]": 2})
    assert ex.placement["main"] == Site(0, -1)
    assert {s.node for s in ex.placement.values()} == {0, 1, 2}
    assert ex.placement["main.gen"] == ex.placement["main.stages[0]"] != ex.placement["main.stages[1]"]
    assert ex.placement["main.stages[1]"].node == 1
    # each 400 KB array came here once as a ref and went on by that ref, never put into Ray's store again
    assert ex.cache.put == 0 and ex.cache.reused >= 2 * (TAGS + 1)


def test_wide_program_with_feedback_scattered_over_three_nodes(ray_nodes: list[NodeInfo]) -> None:
    ex = same_trace(lambda: Wide(6), 3000, pin=lambda main: scatter(main, 3))
    assert {s.node for s in ex.placement.values() if s.group >= 0} == {0, 1, 2}


@pytest.mark.parametrize("example", ["counter", "pipeline"])
def test_examples_same_trace_on_two_nodes(example: str, ray_nodes: list[NodeInfo]) -> None:
    ex = same_trace(lambda: load_main(EXAMPLES / f"{example}.py"), None, nodes=2,
                    pin=lambda main: round_robin(main, 2))
    assert {s.node for s in ex.placement.values() if s.group >= 0} == {0, 1}


def test_default_placement_keeps_a_cheap_chain_on_one_node(ray_nodes: list[NodeInfo]) -> None:
    ex = same_trace(lambda: load_main(EXAMPLES / "counter.py"), None)
    assert {s.node for s in ex.placement.values()} == {0}  # a network hop per tag would cost more


def test_run_by_name_on_the_connected_cluster(ray_cluster: LocalCluster) -> None:
    main = Fan(2)
    result = run(main, executor="ray", timeout=2, trace=True)
    assert len(result.trace) == 3 * 4  # gen, 2 stages, sink at each of 3 tags


# -- faults -------------------------------------------------------------------------------------------------
def gone(ex: RayExecutor) -> None:
    """Every process the executor started has exited, and left nothing in /dev/shm."""
    assert ex.started_pids
    deadline = time.monotonic() + 10
    while any(process_alive(p) for p in ex.started_pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [p for p in ex.started_pids if process_alive(p)]
    assert not [s for p in ex.started_pids for s in leaked_segments(p)]


@pytest.mark.timeout(120)
def test_a_group_killed_on_a_remote_node_is_named(ray_nodes: list[NodeInfo]) -> None:
    ex = RayExecutor(pin={"main.crasher": 2, "main.stages": 1})
    with pytest.raises(NodeLost, match=r"main\.crasher") as err:
        run(Fan(2, crash=True), executor=ex, timeout=10)
    assert ray_nodes[2].node_id[:8] in str(err.value)
    assert "main.stages" not in str(err.value)  # node 1 is fine
    gone(ex)


@pytest.mark.timeout(120)
def test_a_killed_node_agent_stops_the_run_naming_node_and_reactors(ray_nodes: list[NodeInfo]) -> None:
    import ray

    ex = RayExecutor(pin={"main.stage": 1})

    def kill_agent(tag: Tag) -> None:
        if tag.time == 3:
            ray.kill(ex._agents[1])

    with pytest.raises(NodeLost, match=r"main\.stage\b") as err:
        run(Forever(), executor=ex, timeout=50, on_tag=kill_agent)
    assert ray_nodes[1].node_id[:8] in str(err.value)
    gone(ex)


@pytest.mark.timeout(180)
def test_a_lost_node_stops_the_run_naming_it(ray_cluster: LocalCluster) -> None:
    """A whole node (raylet, object store, every process on it) goes away mid-run."""
    from reflow.runtime.ray_cluster import nodes

    extra = ray_cluster.add_node()
    try:
        index = [n.node_id for n in nodes()].index(extra.node_id)
        fourth = nodes()[index]
        ex = RayExecutor(pin={"main.stage": index})

        def lose_node(tag: Tag) -> None:
            if tag.time == 3:
                ray_cluster.remove_node(extra, wait=True)

        t0 = time.monotonic()
        with pytest.raises(NodeLost, match=r"main\.stage\b") as err:
            run(Forever(), executor=ex, timeout=50, on_tag=lose_node)
        assert fourth.node_id[:8] in str(err.value)
        assert time.monotonic() - t0 < 120
        gone(ex)
    finally:
        if extra in ray_cluster.worker_nodes:
            ray_cluster.remove_node(extra, wait=True)
