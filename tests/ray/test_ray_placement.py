"""Placement over nodes: pure passes, no cluster needed."""

from __future__ import annotations

import pytest
from process_programs import Fan

from reflow.graph import Graph
from reflow.reactor import reaction_graph_of
from reflow.runtime.placement import LOCAL
from reflow.runtime.ray_placement import Site, pinned_node, place_on_nodes


def fan_graph(stage_cost: float | None = None) -> Graph:
    g = reaction_graph_of(Fan(3))
    if stage_cost is not None:
        g = g.with_costs({n.name: stage_cost for n in g if "stages" in n.name})
    return g


def test_cheap_reactors_stay_on_one_node_heavy_ones_spread() -> None:
    cheap = place_on_nodes(fan_graph(), [2, 2, 2])
    assert {s.node for s in cheap.values()} == {0}
    assert len({s.group for s in cheap.values()}) == 2  # the node's two CPUs: shared memory is cheap
    heavy = place_on_nodes(fan_graph(0.01), [1, 1, 1, 1, 1])  # 10 ms per stage outweighs a network hop
    assert {heavy[f"main.stages[{k}]"].node for k in range(3)} == {0, 1, 2}
    assert place_on_nodes(fan_graph(0.01), [1, 1, 1, 1, 1]) == heavy  # deterministic


def test_pins_move_whole_subtrees_and_local_stays_here() -> None:
    sites = place_on_nodes(fan_graph(), [1, 1, 1], pin={"main.stages": 2, "main.stages[0]": 1},
                           local=["main"])
    assert sites["main"] == Site(0, LOCAL)
    assert sites["main.stages[0]"].node == 1  # the longest pinned prefix wins
    assert sites["main.stages[1]"].node == sites["main.stages[2]"].node == 2
    assert pinned_node("main.stagesX", {"main.stages": 2}) is None  # a prefix of a name is not an ancestor


def test_bad_requests_name_what_is_wrong() -> None:
    with pytest.raises(ValueError, match=r"pin=\{'main.gen': 3\}.*nodes 0..2"):
        place_on_nodes(fan_graph(), [1, 1, 1], pin={"main.gen": 3})
    with pytest.raises(ValueError, match="at least one node"):
        place_on_nodes(fan_graph(), [])
