"""Issue 18's per-thread levers on models nobody here wrote: a torch TransformerEncoder exported by torch's
own ONNX exporter, and the activation patterns of mobilenet_v2 (Clip) and efficientnet (SiLU)."""

from __future__ import annotations

import re
from collections import Counter

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from onnx_oracle import exec_generated, ort_run, rel_err

from reflow.errors import OnnxImportError
from reflow.onnx.codegen import generate
from reflow.onnx.costmodel import apply_costs, flop_costs, random_inputs
from reflow.onnx.kernels import onnx_linear, onnx_pack_linear_weight
from reflow.onnx.models import set_batch, transformer_model
from reflow.onnx.pipeline import parallelize, prepare
from reflow.onnx.plan import serial_plan


@pytest.fixture(scope="module")
def encoder() -> onnx.ModelProto:
    return transformer_model(layers=1, d_model=32, heads=4, seq=12, ff=64)


def run_generated(model, x: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:  # type: ignore[no-untyped-def]
    code = generate(model, serial_plan(model.graph))
    ns = exec_generated(code.source, model.name)
    weights = {k: torch.from_numpy(np.array(v)) for k, v in code.weights.items()}
    with ns["ParallelModel"](weights) as par:
        out: dict[str, torch.Tensor] = par.serial(**{k: torch.from_numpy(v) for k, v in x.items()})
    return out


def test_exported_encoder_becomes_fused_kernels_and_matches_onnxruntime(encoder: onnx.ModelProto) -> None:
    proto = set_batch(encoder, 2)
    model = prepare(proto)
    ops = Counter(n.op.removeprefix("onnx.") for n in model.graph)
    assert ops["DotProductAttention"] == 1 and ops["Linear"] == 4
    assert "MatMul" not in ops and "Softmax" not in ops
    assert "Shape" not in ops and "Concat" not in ops  # the shape arithmetic was folded at import
    x = random_inputs(model, seed=1)
    (ref,) = ort_run(proto, x)
    assert rel_err(ref, run_generated(apply_costs(model, flop_costs(model)), x)["output"].numpy()) < 1e-4


def test_dense_weights_are_packed_for_the_rows_they_will_meet(encoder: onnx.ModelProto) -> None:
    """Each Linear weight is packed at load for its input's row count, sequence x batch, also where the
    export has flattened that input to 2-D (seq * batch, d): its first dimension is not the batch there."""
    proto = set_batch(encoder, 2)
    model = prepare(proto)
    model = apply_costs(model, flop_costs(model))
    code = generate(model, serial_plan(model.graph))
    packs = re.findall(r'w\["([^"]+)"\] = onnx_pack_linear_weight\(w\["[^"]+"\], (\(.*\)), -1\)', code.source)
    assert len(packs) == 4
    for _, shape in packs:
        rows = np.prod(eval(shape, {"batch": 2})[:-1])
        assert rows == 12 * 2, shape
    ns = exec_generated(code.source, "packed")
    weights = {k: torch.from_numpy(np.array(v)) for k, v in code.weights.items()}
    with ns["ParallelModel"](weights) as par:
        assert all(par.w[name].is_mkldnn == torch.backends.mkldnn.is_available() for name, _ in packs)


def test_encoder_in_batch_slices_matches_onnxruntime(encoder: onnx.ModelProto) -> None:
    """Batch mode runs one slice's graph (its reshape targets were folded for the slice) on each slice."""
    proto = set_batch(encoder, 4)
    result = parallelize(proto, workers=2, profile_ops=False)
    x = random_inputs(result.model, seed=2)
    (ref,) = ort_run(proto, x)
    ns = exec_generated(result.code.source, "encoder_batch")
    weights = {k: torch.from_numpy(np.array(v)) for k, v in result.code.weights.items()}
    with ns["ParallelModel"](weights) as par:
        for out in (par(input=torch.from_numpy(x["input"])), par.serial(input=torch.from_numpy(x["input"]))):
            assert rel_err(ref, out["output"].numpy()) < 1e-4


def test_a_batch_baked_into_a_reshape_is_an_error_naming_the_node() -> None:
    """Issue 18: `--batch 8` on an export made for batch 1 failed inside the profiler with a bare torch
    error; now the error names the node (and says how to export instead)."""
    proto = transformer_model(layers=1, d_model=16, heads=2, seq=8, ff=32, dynamic_batch=False)
    with pytest.raises(OnnxImportError, match=r"node '.*Reshape.*' \(Reshape\) fails on inputs of shapes"):
        parallelize(set_batch(proto, 3), workers=1, profile_ops=False)


def _conv_then(activation: list[onnx.NodeProto], channels: int = 8) -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(0.3 * rng.standard_normal((channels, 3, 3, 3)).astype(np.float32), "w")
    lo, hi = (
        numpy_helper.from_array(np.array(0.0, np.float32), "lo"),
        numpy_helper.from_array(np.array(6.0, np.float32), "hi"),
    )
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]), *activation]
    g = helper.make_graph(
        nodes,
        "act",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 12, 12])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, channels, 12, 12])],
        [w, lo, hi],
    )
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])


CLIP = [helper.make_node("Clip", ["c", "lo", "hi"], ["y"])]
SILU = [helper.make_node("Sigmoid", ["c"], ["s"]), helper.make_node("Mul", ["c", "s"], ["y"])]


@pytest.mark.parametrize(("nodes", "fused"), [(CLIP, "hardtanh"), (SILU, "swish")])
@pytest.mark.parametrize("channels", [8, 64])  # small: F.conv2d + in-place op; bigger: one oneDNN call
def test_clip_and_silu_fold_into_the_conv(nodes: list[onnx.NodeProto], fused: str, channels: int) -> None:
    proto = _conv_then(nodes, channels)
    model = prepare(proto)
    (conv,) = [n for n in model.graph if n.op.startswith("onnx.")]
    assert conv.op == "onnx.FusedConv" and conv.attrs["activation"] == fused
    x = random_inputs(model, seed=3)
    (ref,) = ort_run(proto, x)
    assert rel_err(ref, run_generated(model, x)["y"].numpy()) < 1e-5


GELU_CONSTANTS = {
    "sqrt2": np.array(np.sqrt(2.0), np.float32),
    "one": np.array(1.0, np.float32),
    "half": np.array(0.5, np.float32),
}


def erf_gelu(x: str, y: str) -> list[onnx.NodeProto]:
    """The five ops torch's exporter writes for an exact GELU, ``y = x * (1 + erf(x / sqrt 2)) * 0.5``."""
    return [
        helper.make_node("Div", [x, "sqrt2"], [f"{y}_d"]),
        helper.make_node("Erf", [f"{y}_d"], [f"{y}_e"]),
        helper.make_node("Add", [f"{y}_e", "one"], [f"{y}_a"]),
        helper.make_node("Mul", [x, f"{y}_a"], [f"{y}_m"]),
        helper.make_node("Mul", [f"{y}_m", "half"], [y]),
    ]


def float_model(nodes: list[onnx.NodeProto], consts: dict[str, np.ndarray]) -> onnx.ModelProto:
    """A float32 model from input x (2, 5, 16) to output y (2, 5, 16), with GELU's constants too."""
    g = helper.make_graph(
        nodes,
        "model",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 5, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 5, 16])],
        [numpy_helper.from_array(v, k) for k, v in {**GELU_CONSTANTS, **consts}.items()],
    )
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])


def test_erf_gelu_becomes_one_gelu() -> None:
    """After a Linear the Gelu is absorbed into it (test_a_linear_absorbs_its_activation_and_residual_add)."""
    proto = float_model([helper.make_node("Mul", ["x", "x"], ["h"]), *erf_gelu("h", "y")], {})
    model = prepare(proto)
    assert sorted(n.op for n in model.graph if n.op.startswith("onnx.")) == ["onnx.Gelu", "onnx.Mul"]
    x = random_inputs(model, seed=4)
    (ref,) = ort_run(proto, x)
    assert rel_err(ref, run_generated(model, x)["y"].numpy()) < 1e-5


def test_a_linear_absorbs_its_activation_and_residual_add() -> None:
    """MatMul + bias -> Relu, MatMul -> erf GELU, and MatMul + bias -> Add of a residual of the same shape
    each become one Linear; an Add that broadcasts (a bias the importer could not take) stays an Add."""
    rng = np.random.default_rng(2)
    consts = {
        "w1": rng.standard_normal((16, 32)).astype(np.float32),
        "b1": rng.standard_normal(32).astype(np.float32),
        "w2": rng.standard_normal((32, 16)).astype(np.float32),
        "b2": rng.standard_normal(16).astype(np.float32),
        "w3": rng.standard_normal((16, 16)).astype(np.float32),
        "row": rng.standard_normal((1, 16)).astype(np.float32),
    }
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["h1"]),
        helper.make_node("Add", ["h1", "b1"], ["h1b"]),
        helper.make_node("Relu", ["h1b"], ["r"]),  # Linear + relu
        helper.make_node("MatMul", ["r", "w2"], ["h2"]),
        helper.make_node("Add", ["h2", "b2"], ["h2b"]),
        helper.make_node("Add", ["h2b", "x"], ["res"]),  # Linear + residual x
        helper.make_node("MatMul", ["res", "w3"], ["h3"]),
        *erf_gelu("h3", "g"),  # Linear + gelu
        helper.make_node("MatMul", ["g", "w3"], ["h4"]),
        helper.make_node("Add", ["h4", "row"], ["y"]),  # (1, 16) broadcast over the rows: not absorbed
    ]
    proto = float_model(nodes, consts)
    model = prepare(proto)
    linears = {n.attrs["_outputs"][0]: n for n in model.graph if n.op == "onnx.Linear"}
    assert [n.op for n in model.graph if n.op.startswith("onnx.") and n.op != "onnx.Linear"] == ["onnx.Add"]
    assert linears["r"].attrs["activation"] == "relu"
    assert linears["res"].attrs["_inputs"][3] == "x" and linears["res"].attrs["activation"] == "none"
    assert linears["g"].attrs["activation"] == "gelu"
    assert len(linears["h4"].attrs["_inputs"]) == 3
    x = random_inputs(model, seed=5)
    (ref,) = ort_run(proto, x)
    assert rel_err(ref, run_generated(apply_costs(model, flop_costs(model)), x)["y"].numpy()) < 1e-5


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_onnx_linear_equals_linear_add_activation(dtype: torch.dtype) -> None:
    """The oneDNN matrix product (float32, on the plain and on the packed weight) and the F.linear fallback
    (float64) compute the same thing: with and without bias and residual, each fused activation, on a
    transposed (non-contiguous) 3-D input."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(7, 3, 16, generator=gen, dtype=dtype).transpose(0, 1)
    w = torch.randn(5, 16, generator=gen, dtype=dtype)
    b = torch.randn(5, generator=gen, dtype=dtype)
    z = torch.randn(3, 7, 5, generator=gen, dtype=dtype)
    acts = {
        "none": lambda y: y,
        "relu": torch.relu,
        "hardtanh": lambda y: y.clamp(0.0, 6.0),
        "swish": torch.nn.functional.silu,
        "gelu": torch.nn.functional.gelu,
    }
    packed = onnx_pack_linear_weight(w, (3, 7, 16), -1)  # oneDNN's layout for float32; float64 as it is
    assert packed.is_mkldnn == (dtype == torch.float32 and torch.backends.mkldnn.is_available())
    for weight in (w, packed):
        for act, ref_act in acts.items():
            scalars = (0.0, 6.0) if act == "hardtanh" else ()
            for bias in (b, None):
                ref = ref_act(torch.nn.functional.linear(x, w, bias))
                torch.testing.assert_close(onnx_linear(x, weight, bias, None, act, scalars), ref)
        with_z = onnx_linear(x, weight, b, z.clone(), "relu")
        torch.testing.assert_close(with_z, torch.relu(torch.nn.functional.linear(x, w, b) + z))


def test_the_encoder_exports_inside_a_callers_inference_mode() -> None:
    """Under inference_mode eval-mode attention takes torch's fused fast path, which has no ONNX export: the
    model builder turns grad back on for its export (onnx_conv_kernels.py called it inside one)."""
    with torch.inference_mode():
        proto = transformer_model(layers=1, d_model=32, heads=4, seq=12, ff=64)
    assert "Softmax" in {n.op_type for n in proto.graph.node}
