"""Cost model: profiled and analytic costs, and its error against a measured whole-graph run."""

from __future__ import annotations

import math

from reflow.onnx import import_model
from reflow.onnx.costmodel import flop_costs, in_situ_costs, measure_graph, profile, random_inputs
from reflow.onnx.models import wide_model


def test_profile_costs_every_compute_node_and_measures_shapes() -> None:
    model = import_model(wide_model(3, size=10, channels=8))
    prof = profile(model, random_inputs(model), repeats=1)
    compute = [n.name for n in model.graph if n.op.startswith("onnx.")]
    assert sorted(prof.costs) == sorted(compute)
    assert all(c > 0 for c in prof.costs.values())
    g = prof.model.graph
    assert all(g.node(n).cost == prof.costs[n] for n in compute)
    # edge sizes are bytes of the measured tensors: a Relu output of shape (1, 4, 10, 10) float32
    relu_edge = next(e for e in g.edges if e.src == "b0_br0_0_relu")
    assert relu_edge.size == 4 * 10 * 10 * 4


def test_flop_model_ranks_a_3x3_conv_above_a_1x1_conv() -> None:
    model = import_model(wide_model(2, size=10, channels=8))
    costs = flop_costs(model)
    assert costs["b0_br1_1"] > costs["b0_br1_0"] > 0  # 3x3 conv vs 1x1 conv on the same channels


def test_measured_graph_time_is_positive_and_comparable() -> None:
    model = import_model(wide_model(2, size=10, channels=8))
    prof = profile(model, random_inputs(model), repeats=1).model
    measured = measure_graph(prof, repeats=2)
    assert measured > 0 and math.isfinite(prof.graph.total_cost() / measured)


def test_in_situ_costs_time_every_node_inside_whole_runs() -> None:
    """Each compute node, and nothing else, gets its median time within whole runs."""
    model = import_model(wide_model(2, size=10, channels=8))
    x = random_inputs(model)
    costs = in_situ_costs(model, x, repeats=5)
    assert sorted(costs) == sorted(n.name for n in model.graph if n.op.startswith("onnx."))
    assert all(c > 0 for c in costs.values())
