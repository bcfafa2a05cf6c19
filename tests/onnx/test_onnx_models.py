"""The test models: random weights keep the light models well-formed; batch and width are adjustable."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import numpy_helper
from onnx_oracle import ort_run

from reflow.errors import OnnxImportError
from reflow.onnx import import_model
from reflow.onnx.costmodel import random_inputs
from reflow.onnx.models import light_model, light_model_path, randomize_weights, set_batch, wide_model


def test_randomized_weights_are_seeded_and_batchnorm_variances_positive() -> None:
    a, b = (
        randomize_weights(light_model_path("inception_v2"), 3),
        randomize_weights(light_model_path("inception_v2"), 3),
    )
    assert [i.raw_data for i in a.graph.initializer] == [i.raw_data for i in b.graph.initializer]
    inits = {i.name: numpy_helper.to_array(i) for i in a.graph.initializer}
    variances = [inits[n.input[4]] for n in a.graph.node if n.op_type == "BatchNormalization"]
    assert variances and all((v > 0).all() for v in variances)
    assert not any(n.op_type == "ConstantOfShape" for n in a.graph.node)


def test_set_batch_runs_in_onnxruntime_at_batch_3() -> None:
    proto = set_batch(light_model("squeezenet"), 3)
    x = random_inputs(import_model(proto))
    assert x["data_0"].shape[0] == 3
    (y,) = ort_run(proto, x)
    assert y.shape[0] == 3


@pytest.mark.parametrize("branches", [2, 8])
def test_wide_model_has_the_asked_number_of_branches(branches: int) -> None:
    g = import_model(wide_model(branches, blocks=2)).graph
    concat = g.node("b0_concat")
    assert len(concat.inputs) == branches


def test_unknown_light_model_is_a_clear_error() -> None:
    with pytest.raises(OnnxImportError, match="unknown light model 'nope'"):
        light_model_path("nope")


def test_constants_are_folded_and_dead_values_dropped() -> None:
    model = import_model(light_model("densenet121"))
    ops = {n.op for n in model.graph}
    assert "onnx.Unsqueeze" not in ops  # Unsqueeze of weights is folded
    used = {v for n in model.graph for v in n.attrs.get("_inputs", ())}
    assert set(model.weights) <= used
    assert all(isinstance(w, np.ndarray) for w in model.weights.values())


def test_affine_folding_keeps_a_conv_whose_output_is_also_used_elsewhere() -> None:
    from onnx import TensorProto, helper
    from onnx_oracle import ort_run, rel_err

    from reflow.onnx.affine_folding import fold_affine_into_conv
    from reflow.onnx.eager import run_graph

    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((4, 3, 1, 1)).astype(np.float32), "w")
    k = numpy_helper.from_array(rng.standard_normal((4, 1, 1)).astype(np.float32), "k")
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], kernel_shape=[1, 1]),
        helper.make_node("Mul", ["c", "k"], ["m"]),  # foldable: per-channel constant
        helper.make_node("Relu", ["m"], ["r"]),
        helper.make_node("Conv", ["r", "w2"], ["c2"], kernel_shape=[1, 1]),
        helper.make_node("Add", ["c2", "k"], ["a"]),  # not foldable: c2 also feeds the output
        helper.make_node("Sub", ["a", "c2"], ["y"]),
    ]
    w2 = numpy_helper.from_array(rng.standard_normal((4, 4, 1, 1)).astype(np.float32), "w2")
    g = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 5, 5])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 5, 5])],
        [w, k, w2],
    )
    proto = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    model = import_model(proto)
    folded = fold_affine_into_conv(model)
    assert len(folded.graph) == len(model.graph) - 1
    x = {"x": rng.standard_normal((1, 3, 5, 5)).astype(np.float32)}
    (ref,) = ort_run(proto, x)
    assert rel_err(ref, run_graph(folded, x)["y"].numpy()) < 1e-5


def test_nodes_that_reach_no_output_are_dropped() -> None:
    from onnx import TensorProto, helper

    nodes = [
        helper.make_node("Relu", ["x"], ["y"], name="used"),
        helper.make_node("Exp", ["x"], ["z"], name="dead"),
    ]
    g = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])],
    )
    names = import_model(helper.make_model(g)).graph.names
    assert "used" in names and "dead" not in names and "input:x" in names


def test_a_dynamic_batch_model_still_gets_its_convs_fused() -> None:
    """Issue 18: with the batch left dynamic, ONNX shape inference knows no conv input shape, and no conv
    was fused (0 of 26 in a dynamic-batch squeezenet); a run on random inputs now tells the shapes."""
    from reflow.onnx.pipeline import prepare

    proto = light_model("squeezenet")
    proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "batch"
    model = prepare(proto)
    convs = [n.op for n in model.graph if n.op in ("onnx.Conv", "onnx.FusedConv")]
    assert convs and set(convs) == {"onnx.FusedConv"}
