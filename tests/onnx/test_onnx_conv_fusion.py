"""Conv + residual Add + Relu fused into FusedConv nodes: what is absorbed; answers equal onnxruntime's."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F
from onnx import TensorProto, helper, numpy_helper
from onnx_oracle import exec_generated, ort_run, rel_err

from reflow.onnx import conv_fusion, import_model
from reflow.onnx.codegen import generate
from reflow.onnx.costmodel import apply_costs, flop_costs, random_inputs
from reflow.onnx.eager import run_graph
from reflow.onnx.kernels import onnx_conv, onnx_conv1x1, onnx_pack_conv_weight
from reflow.onnx.pipeline import inference_rewrites
from reflow.onnx.plan import Plan, serial_plan
from reflow.onnx.planner import make_plan


def residual_model(batch: int = 1) -> onnx.ModelProto:
    """x -> c1 -> BN -> Relu -> c2 -> Add(x) -> Relu -> out; c3 (stride 2, grouped) -> out2 (no Relu: the
    conv output is a model output); c4 -> Add(broadcast constant) -> Relu -> c5 -> Add(c4's Relu) -> out3
    (c4's Relu is read twice, so only c5 fuses its Add)."""
    rng = np.random.default_rng(0)
    inits: list[TensorProto] = []

    def init(name: str, a: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(a.astype(np.float32), name))
        return name

    def w(name: str, cout: int, cin: int, k: int) -> str:
        return init(name, rng.uniform(-1, 1, (cout, cin, k, k)) / np.sqrt(cin * k * k))

    c = 8
    nodes = [
        helper.make_node(
            "Conv", ["x", w("w1", c, c, 3), init("b1", rng.normal(size=c))], ["c1"], pads=[1] * 4
        ),
        helper.make_node(
            "BatchNormalization",
            [
                "c1",
                init("s", rng.uniform(0.5, 1.5, c)),
                init("t", rng.normal(size=c)),
                init("m", 0.1 * rng.normal(size=c)),
                init("v", rng.uniform(0.5, 1.5, c)),
            ],
            ["n1"],
        ),
        helper.make_node("Relu", ["n1"], ["r1"]),
        helper.make_node("Conv", ["r1", w("w2", c, c, 3)], ["c2"], pads=[1] * 4),
        helper.make_node("Add", ["x", "c2"], ["a2"]),
        helper.make_node("Relu", ["a2"], ["out"]),
        helper.make_node("Conv", ["x", w("w3", c, 2, 3)], ["out2"], pads=[1] * 4, strides=[2, 2], group=4),
        helper.make_node("Conv", ["x", w("w4", c, c, 1)], ["c4"]),
        helper.make_node("Add", ["c4", init("k", rng.normal(size=(1, c, 1, 1)))], ["a4"]),
        helper.make_node("Relu", ["a4"], ["r4"]),
        helper.make_node("Conv", ["r4", w("w5", c, c, 3)], ["c5"], pads=[1] * 4),
        helper.make_node("Add", ["c5", "r4"], ["out3"]),
    ]
    graph = helper.make_graph(
        nodes,
        "residual",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, c, 10, 10])],
        [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in ("out", "out2", "out3")],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


@pytest.fixture(params=["onednn", "aten", "linear"])
def kernel(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every FusedConv kernel, whatever the size of the test's convolutions ("linear": the pointwise convs
    run as a GEMM, the others as "aten")."""
    limit = 0.0 if request.param == "onednn" else math.inf
    monkeypatch.setattr(conv_fusion, "ONEDNN_MIN_FLOPS", limit)
    monkeypatch.setattr(conv_fusion, "ONEDNN_MIN_FLOPS_1X1", limit)
    monkeypatch.setattr(conv_fusion, "LINEAR_MAX_OUTPUT", math.inf if request.param == "linear" else -1)
    monkeypatch.setattr(conv_fusion, "ATEN_MAX_FLOPS_1X1_BATCH_1", 0.0)
    return str(request.param)


def fused(proto: onnx.ModelProto):  # type: ignore[no-untyped-def]
    model = inference_rewrites(import_model(proto))
    return apply_costs(model, flop_costs(model))


def test_fusion_absorbs_residual_add_and_relu_only_where_nothing_else_reads() -> None:
    g = fused(residual_model()).graph
    kernels = {n.attrs["_outputs"][0]: n.attrs.get("kernel") for n in g if n.op == "onnx.FusedConv"}
    # all too small for oneDNN; the one pointwise conv too small at batch 1 for its GEMM (the next test)
    assert kernels == {"r1": "aten", "out": "aten", "out2": "aten", "r4": "aten", "out3": "aten"}
    convs = {n.name: n for n in g if n.op == "onnx.FusedConv"}
    assert len(convs) == 5 and not any(n.op == "onnx.Conv" for n in g)
    by_out = {n.attrs["_outputs"][0]: n for n in convs.values()}
    assert by_out["r1"].attrs["activation"] == "relu"  # BatchNorm folded first, then the Relu fused
    assert by_out["out"].attrs["_inputs"][3] == "x" and by_out["out"].attrs["activation"] == "relu"
    assert by_out["out2"].attrs["activation"] == "none"
    assert by_out["r4"].attrs["_inputs"][3] == ""  # the constant Add was folded into the conv's bias
    assert by_out["out3"].attrs["_inputs"][3] == "r4" and by_out["out3"].attrs["activation"] == "none"
    assert {n.op for n in g if n.op.startswith("onnx.")} == {"onnx.FusedConv"}


def test_fusion_leaves_a_conv_whose_output_is_read_twice() -> None:
    proto = residual_model()
    proto.graph.output.append(helper.make_tensor_value_info("c2", TensorProto.FLOAT, None))
    g = fused(proto).graph
    (c2,) = [n for n in g if n.op == "onnx.FusedConv" and n.attrs["_outputs"] == ["c2"]]
    assert c2.attrs["activation"] == "none" and c2.attrs["_inputs"][3] == ""
    assert any(n.op == "onnx.Add" for n in g)


@pytest.mark.parametrize("workers", [1, 2])
def test_fused_generated_code_matches_onnxruntime(workers: int, kernel: str) -> None:
    proto = residual_model()
    model = fused(proto)
    x = random_inputs(model, seed=1)
    ref = ort_run(proto, x)
    plan = serial_plan(model.graph) if workers == 1 else make_plan(model.graph, workers)
    code = generate(model, plan)
    if kernel == "onednn":
        assert "onnx_conv(" in code.source and "onnx_pack_conv_weight(" in code.source
    elif kernel == "linear":  # c4, the one pointwise conv, its weight flattened and packed once at load
        assert "onnx_conv1x1(v_x, " in code.source
        assert '.folded_w"].flatten(1), (batch, 8, 10, 10), 1)  # Conv_7' in code.source
    else:
        assert "onnx_conv(" not in code.source and ".add_(v_x).relu_()" in code.source
    ns = exec_generated(code.source, "fused")
    with ns["ParallelModel"]({k: torch.from_numpy(np.array(v)) for k, v in code.weights.items()}) as par:
        for outs in (par(x=torch.from_numpy(x["x"])), par.serial(x=torch.from_numpy(x["x"]))):
            for r, vi in zip(ref, model.outputs, strict=True):
                assert rel_err(r, outs[vi.name].numpy()) < 1e-4, vi.name


def test_weights_packed_for_a_slice_serve_the_batch_in_parallel_and_in_turn(kernel: str) -> None:
    """Batch mode packs for the slice shape; the parallel slices and the serial reference agree."""
    proto = residual_model(batch=4)
    model = fused(residual_model(batch=2))
    x = random_inputs(fused(proto), seed=2)
    ref = ort_run(proto, x)
    total = model.graph.total_cost()
    compute = (tuple(n.name for n in model.graph if n.op.startswith("onnx.")),)
    plan = Plan(model.graph, compute, 2, "batch", 1, 2, total, total / 2, total, 1, len(compute[0]))
    code = generate(model, plan)
    ns = exec_generated(code.source, "fused_batch")
    with ns["ParallelModel"]({k: torch.from_numpy(np.array(v)) for k, v in code.weights.items()}) as par:
        for outs in (par(x=torch.from_numpy(x["x"])), par.serial(x=torch.from_numpy(x["x"]))):
            assert rel_err(ref[0], outs["out"].numpy()) < 1e-4


def test_eager_interpreter_runs_fused_nodes_with_packed_weights(kernel: str) -> None:
    proto = residual_model()
    model = fused(proto)
    x = random_inputs(model, seed=3)
    ref = ort_run(proto, x)
    with torch.inference_mode():
        out = run_graph(model, x)
    assert rel_err(ref[2], out["out3"].numpy()) < 1e-4


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_onnx_conv_equals_conv_add_relu(dtype: torch.dtype) -> None:
    """The oneDNN path (float32, packed or not) and the plain fallback (float64) compute the same thing."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 6, 9, 9, generator=gen, dtype=dtype)
    w = torch.randn(4, 3, 3, 3, generator=gen, dtype=dtype)
    b = torch.randn(4, generator=gen, dtype=dtype)
    z = torch.randn(2, 4, 5, 5, generator=gen, dtype=dtype)
    ref = torch.relu(F.conv2d(x, w, b, (2, 2), (1, 1), (1, 1), 2) + z)
    packed = onnx_pack_conv_weight(w, (1, 1), (2, 2), (1, 1), 2, (2, 6, 9, 9))
    assert packed.is_mkldnn == (dtype == torch.float32)
    for weight in (w, packed):
        got = onnx_conv(x, weight, b, z, (2, 2), (1, 1), (1, 1), 2, "relu")
        torch.testing.assert_close(got, ref)
    plain = onnx_conv(x, w, None, None, (2, 2), (1, 1), (1, 1), 2, "none")
    torch.testing.assert_close(plain, F.conv2d(x, w, None, (2, 2), (1, 1), (1, 1), 2))


@pytest.mark.parametrize("layout", [torch.channels_last, torch.contiguous_format])
def test_onnx_conv1x1_equals_conv_add_activation(layout: torch.memory_format) -> None:
    """The GEMM lowering of a pointwise conv: equal to F.conv2d for either input layout, 2-D or 4-D weight,
    with and without the residual and each activation; a channels-last input gives a channels-last output."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 6, 5, 7, generator=gen).contiguous(memory_format=layout)
    w = torch.randn(4, 6, 1, 1, generator=gen)
    b = torch.randn(4, generator=gen)
    z = torch.randn(2, 4, 5, 7, generator=gen)
    for act, scalars in (("none", ()), ("relu", ()), ("hardtanh", (0.0, 6.0)), ("swish", ())):
        for weight, bias, res in ((w, b, None), (w.flatten(1), None, z), (w.flatten(1), b, z)):
            y = F.conv2d(x, w, bias) + (0 if res is None else res)
            ref = {"none": y, "relu": y.relu(), "hardtanh": y.clamp(0.0, 6.0), "swish": F.silu(y)}[act]
            got = onnx_conv1x1(x, weight, bias, None if res is None else res.clone(), act, scalars)
            torch.testing.assert_close(got, ref)
            if layout == torch.channels_last:
                assert got.is_contiguous(memory_format=torch.channels_last)


def one_conv_then(
    w: np.ndarray, x_shape: list[int], activation: str, **conv: int | list[int]
) -> onnx.ModelProto:
    """x -> Conv(w, **conv) -> ``activation`` -> y."""
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["c"], **conv), helper.make_node(activation, ["c"], ["y"])],
        "one_conv",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(w.astype(np.float32), "w")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def fused_conv_checked(proto: onnx.ModelProto) -> dict[str, Any]:
    """The attributes of the model's one FusedConv, after its eager run matched onnxruntime's."""
    model = fused(proto)
    (conv,) = [n for n in model.graph if n.op == "onnx.FusedConv"]
    x = random_inputs(model, seed=2)
    (ref,) = ort_run(proto, x)
    assert rel_err(ref, run_graph(model, x)["y"].numpy()) < 1e-5
    return dict(conv.attrs)


@pytest.mark.parametrize(
    ("batch", "side", "cin", "cout", "kernel"),
    [
        (1, 1, 1152, 48, "aten"),  # squeeze-excitation at batch 1: oneDNN's call overhead is most of it
        (8, 1, 1152, 48, "linear"),  # the same at batch 8: torch's conv splits the batch across threads
        (1, 14, 384, 64, "linear"),  # a pointwise conv of a real feature map
    ],
)
def test_pointwise_conv_kernel_follows_batch_and_size(
    batch: int, side: int, cin: int, cout: int, kernel: str
) -> None:
    w = np.random.default_rng(3).standard_normal((cout, cin, 1, 1)) / cin
    attrs = fused_conv_checked(one_conv_then(w, [batch, cin, side, side], "Sigmoid"))
    assert attrs["kernel"] == kernel


@pytest.mark.parametrize(("channels", "kernel"), [(32, "aten"), (384, "onednn")])
def test_depthwise_conv_kernel_follows_size(channels: int, kernel: str) -> None:
    """A 3x3 depthwise conv (ReLU after it) on 14x14 at batch 1: 0.11 MFLOP stays on F.conv2d, 1.35 MFLOP
    goes to oneDNN's fused call, which won inside whole runs from 0.5 MFLOP."""
    w = np.random.default_rng(4).standard_normal((channels, 1, 3, 3))
    proto = one_conv_then(w, [1, channels, 14, 14], "Relu", pads=[1] * 4, group=channels)
    attrs = fused_conv_checked(proto)
    assert attrs["kernel"] == kernel and attrs["activation"] == "relu"


def test_generated_code_frees_each_intermediate_after_its_last_use() -> None:
    model = fused(residual_model())
    src = generate(model, serial_plan(model.graph)).source
    serial = src.split("def forward_serial(")[1].split("\ndef ")[0]
    assert "    del v_x" in serial and "del v_r1" in serial
    assert "del v_out\n" not in serial  # returned values stay


def test_batchnorm_heads_its_own_chain_of_per_channel_mul_and_add() -> None:
    """densenet's pre-activation BatchNorm -> Mul -> Add -> Relu: one ChannelAffine with the ReLU fused."""
    rng = np.random.default_rng(1)
    c = 6

    def const(name: str, a: np.ndarray) -> TensorProto:
        return numpy_helper.from_array(a.astype(np.float32), name)

    inits = [
        const("s", rng.uniform(0.5, 1.5, c)),
        const("t", rng.normal(size=c)),
        const("m", rng.normal(size=c)),
        const("v", rng.uniform(0.5, 1.5, c)),
        const("k", rng.uniform(0.5, 1.5, (c, 1, 1))),
        const("d", rng.normal(size=(1, c, 1, 1))),
    ]
    nodes = [
        helper.make_node("BatchNormalization", ["x", "s", "t", "m", "v"], ["n"], epsilon=1e-3),
        helper.make_node("Mul", ["n", "k"], ["p"]),
        helper.make_node("Add", ["d", "p"], ["q"]),
        helper.make_node("Relu", ["q"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "bn_chain",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, c, 5, 5])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        inits,
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model = fused(proto)
    (node,) = [n for n in model.graph if n.op.startswith("onnx.")]
    assert node.op == "onnx.ChannelAffine" and node.attrs["activation"] == "relu"
    x = random_inputs(model, seed=4)
    ns = exec_generated(generate(model, serial_plan(model.graph)).source, "bn_chain")
    with ns["ParallelModel"]({k: torch.from_numpy(np.array(v)) for k, v in model.weights.items()}) as par:
        out = par.serial(x=torch.from_numpy(x["x"]))["y"].numpy()
    assert rel_err(ort_run(proto, x)[0], out) < 1e-4
