"""The whole-graph compiler: which models it takes, the lowering it reads, and the compiled module checked
against onnxruntime (serially and in batch slices on threads) and against its own eager function."""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from onnx_oracle import exec_generated, ort_run, rel_err

from reflow.onnx.codegen import generate
from reflow.onnx.costmodel import random_inputs
from reflow.onnx.eager import compile_call
from reflow.onnx.graph_compiler import compilable, concat_chains, for_graph_compiler, vector_convs
from reflow.onnx.kernels import (
    onnx_concat_grow,
    onnx_concat_start,
    onnx_global_pool,
    onnx_graph_compile,
)
from reflow.onnx.models import light_model, transformer_model, wide_model
from reflow.onnx.pipeline import prepare
from reflow.onnx.plan import Plan, serial_plan

needs_onednn_graph = pytest.mark.skipif(
    not hasattr(torch._C, "_jit_llga_enabled"), reason="this torch has no oneDNN Graph fuser"
)


def test_convolutional_networks_are_compiled_and_transformers_are_not() -> None:
    from reflow.onnx.pipeline import _compile_choice

    assert compilable(prepare(light_model("resnet50", batch=1)))
    inception = prepare(light_model("inception_v1", batch=1))
    assert not compilable(inception)  # its LRNs ran 8x slower compiled
    assert _compile_choice(inception, 1, True) == (False, "no: not in graph_compiler.GRAPH_OPS: LRN")
    assert not compilable(prepare(transformer_model()))


@pytest.mark.parametrize("compiled_time, compiled", [(1.0, True), (3.0, False)])
def test_the_pipeline_compiles_only_where_the_compiled_graph_measures_faster(
    monkeypatch: pytest.MonkeyPatch, compiled_time: float, compiled: bool
) -> None:
    """The choice follows the two whole-graph measurements (fixed here, so that the test does not depend
    on this machine's timing), and the module's lowering follows the choice."""
    from reflow.onnx import pipeline

    monkeypatch.setattr(pipeline, "_measure", lambda model, threads, c: compiled_time if c else 2.0)
    result = pipeline.parallelize(wide_model(2, size=8, channels=8), workers=1, profile_ops=False)
    code = result.code.source
    assert f"COMPILE = {compiled}" in code
    body = code[code.index("def forward_serial") : code.index("def prepare_weights")]
    assert bool(re.search(r"\.relu_\(", body)) != compiled  # the eager lowering's in-place activations


def test_the_lowering_for_the_compiler_is_plain_out_of_place_torch() -> None:
    """No oneDNN calls of reflow's own, no prepacked weights, no running-max pools and no in-place ops: what
    a tracer and oneDNN Graph read. The same model lowered for eager runs has the first three, so each
    assertion can fail."""
    eager = prepare(light_model("inception_v1", batch=1))
    lowered = for_graph_compiler(eager)
    for model, compiled in ((eager, False), (lowered, True)):
        code = generate(model, serial_plan(model.graph), compile=compiled).source
        body = code[code.index("def forward_serial") : code.index("def prepare_weights")]
        found = [bool(re.search(r"onnx_(conv|conv1x1|linear)\(", body)), "onnx_window_max(" in body]
        found.append("onnx_pack_" in code[code.index("def prepare_weights") :])
        assert found == [not compiled] * 3, found
        assert f"COMPILE = {compiled}" in code
    assert not re.search(r"\.\w+_\(", body)  # the lowered body: nothing in place


def _batch_plan(model: Any, slices: int) -> Plan:
    compute = (tuple(n.name for n in model.graph if n.op.startswith("onnx.")),)
    total = model.graph.total_cost()
    n = len(compute[0])
    return Plan(model.graph, compute, slices, "batch", 1, slices, total, total / slices, total, 1, n)


@needs_onednn_graph
def test_the_compiled_module_matches_onnxruntime_in_batch_slices_and_serially() -> None:
    """Two batch slices run one compiled graph on two threads at once; both they and the serial reference
    match onnxruntime, and the fuser's process-wide switch is left as it was found."""
    proto = light_model("inception_v1", batch=4)
    slice_model = for_graph_compiler(prepare(light_model("inception_v1", batch=2)))
    code = generate(slice_model, _batch_plan(slice_model, 2), compile=True)
    x = random_inputs(prepare(proto), seed=5)
    (ref,) = ort_run(proto, x)
    ns = exec_generated(code.source, "compiled_batch")
    out_name = slice_model.outputs[0].name
    weights = {k: torch.from_numpy(np.array(v)) for k, v in code.weights.items()}
    with ns["ParallelModel"](weights) as par:
        assert par.forward is not ns["forward_serial"]  # compiled, not the eager fallback
        got = par(data_0=torch.from_numpy(x["data_0"]))[out_name].numpy()
        serial = par.serial(data_0=torch.from_numpy(x["data_0"]))[out_name].numpy()
    assert rel_err(ref, got) < 1e-4 and rel_err(ref, serial) < 1e-4
    assert not torch._C._jit_llga_enabled()


def _conv_relu(w: dict[str, torch.Tensor], inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {"y": torch.relu(torch.nn.functional.conv2d(inputs["x"], w["k"], padding=1))}


@needs_onednn_graph
def test_a_compiled_function_equals_its_eager_self_on_new_inputs() -> None:
    """On new inputs of the traced shapes, and on inputs of other shapes (which the graph cannot take)."""
    w = {"k": torch.randn(8, 4, 3, 3, generator=torch.Generator().manual_seed(0))}
    x = {"x": torch.randn(2, 4, 10, 10, generator=torch.Generator().manual_seed(1))}
    compiled = onnx_graph_compile(_conv_relu, w, x)
    assert compiled is not _conv_relu
    other = {"x": torch.randn(2, 4, 10, 10, generator=torch.Generator().manual_seed(2))}
    torch.testing.assert_close(compiled(w, other)["y"], _conv_relu(w, other)["y"], rtol=1e-5, atol=1e-5)
    bigger = {"x": torch.randn(3, 4, 12, 12, generator=torch.Generator().manual_seed(3))}  # runs eagerly
    torch.testing.assert_close(compiled(w, bigger)["y"], _conv_relu(w, bigger)["y"], rtol=1e-5, atol=1e-5)


@needs_onednn_graph
def test_compiling_falls_back_to_the_eager_function_and_says_why() -> None:
    """A function the tracer cannot take, and one whose traced graph computes something else (it reads
    Python state the trace freezes), both come back unchanged, with a warning naming the reason."""
    w = {"k": torch.ones(1)}
    x = {"x": torch.ones(3)}

    def not_a_tensor(w: dict[str, Any], inputs: dict[str, torch.Tensor]) -> dict[str, Any]:
        return {"y": inputs["x"] * w["k"], "n": 3}

    calls = [0]

    def stateful(w: dict[str, torch.Tensor], inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        calls[0] += 1
        return {"y": inputs["x"] * calls[0]}

    with pytest.warns(UserWarning, match="tracing failed"):
        assert onnx_graph_compile(not_a_tensor, w, x) is not_a_tensor  # type: ignore[arg-type]
    with pytest.warns(UserWarning, match="'y' differs"):
        assert onnx_graph_compile(stateful, w, x) is stateful
    assert not torch._C._jit_llga_enabled()


def squeeze_excitation_model(batch: int = 1, size: int = 64, gated_output: bool = False) -> onnx.ModelProto:
    """x -> 3x3 conv + SiLU (s) -> squeeze-excitation: global average pool, 1x1 conv + Relu, 1x1 conv +
    Sigmoid (the gate g) -> s * g -> 1x1 conv -> y; with ``gated_output`` s * g is a model output too."""
    rng = np.random.default_rng(0)
    c = 32
    inits = [
        numpy_helper.from_array(
            (rng.uniform(-1, 1, shape) / np.sqrt(np.prod(shape[1:]))).astype(np.float32), k
        )
        for k, shape in (
            ("w1", (c, c, 3, 3)),
            ("w2", (8, c, 1, 1)),
            ("w3", (c, 8, 1, 1)),
            ("w4", (16, c, 1, 1)),
        )
    ]
    inits += [
        numpy_helper.from_array(rng.normal(size=n).astype(np.float32), k) for k, n in (("b3", c), ("b4", 16))
    ]
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["c1"], pads=[1] * 4),
        helper.make_node("Sigmoid", ["c1"], ["e1"]),
        helper.make_node("Mul", ["c1", "e1"], ["s"]),
        helper.make_node("GlobalAveragePool", ["s"], ["p"]),
        helper.make_node("Conv", ["p", "w2"], ["c2"]),
        helper.make_node("Relu", ["c2"], ["r2"]),
        helper.make_node("Conv", ["r2", "w3", "b3"], ["c3"]),
        helper.make_node("Sigmoid", ["c3"], ["g"]),
        helper.make_node("Mul", ["s", "g"], ["sg"]),
        helper.make_node("Conv", ["sg", "w4", "b4"], ["y"]),
    ]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 16, size, size])]
    if gated_output:
        outputs.append(helper.make_tensor_value_info("sg", TensorProto.FLOAT, [batch, c, size, size]))
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, c, size, size])
    graph = helper.make_graph(nodes, "squeeze_excitation", [x], outputs, inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _compiled_outputs(proto: onnx.ModelProto) -> tuple[str, dict[str, np.ndarray[Any, Any]]]:
    """The generated module's source for ``proto`` lowered for the graph compiler, and what its compiled
    serial function returns on random inputs, beside onnxruntime's answer (keys ``ort:NAME``)."""
    model = for_graph_compiler(prepare(proto))
    code = generate(model, serial_plan(model.graph), compile=True)
    ns = exec_generated(code.source, "compiled_se")
    x = random_inputs(model, seed=3)
    batch = next(iter(x.values())).shape[0]
    w = ns["prepare_weights"]({k: torch.from_numpy(np.array(v)) for k, v in code.weights.items()}, batch)
    forward = ns["compiled_forward"](w, batch)
    assert forward is not ns["forward_serial"]  # compiled, not the eager fallback
    with torch.inference_mode():
        got = {k: v.numpy() for k, v in forward(w, {k: torch.from_numpy(v) for k, v in x.items()}).items()}
    refs = ort_run(proto, x)
    got.update({f"ort:{vi.name}": r for vi, r in zip(proto.graph.output, refs, strict=True)})
    return code.source, got


@needs_onednn_graph
def test_a_global_average_pool_is_one_window_pool_of_constant_size_and_matches_onnxruntime() -> None:
    """oneDNN Graph takes a pool into its partitions only where its window is a constant: the lowering
    writes the map's size (known statically) where it is, and the mean where it is not. (At batch 2: at
    batch 1 this pool feeds matrix-vector products and is a mean, tested below.)"""
    lowered = for_graph_compiler(prepare(squeeze_excitation_model(batch=2)))
    (pool,) = [n for n in lowered.graph if n.op == "onnx.GlobalAveragePool"]
    assert pool.attrs["window"] == (64, 64)
    source, got = _compiled_outputs(squeeze_excitation_model(batch=2))
    assert "F.avg_pool2d(" in source and ", (64, 64), (64, 64))" in source
    assert rel_err(got["ort:y"], got["y"]) < 1e-4
    unknown = prepare(squeeze_excitation_model(batch=2))
    unknown.values.pop(pool.attrs["_inputs"][0])  # shape inference could not tell the map's size
    (pool,) = [n for n in for_graph_compiler(unknown).graph if n.op == "onnx.GlobalAveragePool"]
    assert "window" not in pool.attrs
    x = torch.randn(2, 3, 5, 7)
    torch.testing.assert_close(onnx_global_pool(x, "avg"), x.mean(dim=(2, 3), keepdim=True))


def _gated_convs(lowered: Any) -> list[Any]:
    return [n for n in lowered.graph if n.op == "onnx.FusedConv" and len(n.attrs["_inputs"]) > 4]


@needs_onednn_graph
def test_a_squeeze_excitation_gate_scales_the_weight_of_the_conv_it_feeds_and_matches_onnxruntime() -> None:
    """conv(s * g, W) == conv(s, W * g) for a gate g of one value per channel: the multiply over the
    activation is gone, the conv reads s and the gate, and the compiled module still answers as onnxruntime
    does."""
    lowered = for_graph_compiler(prepare(squeeze_excitation_model()))
    (conv,) = _gated_convs(lowered)
    assert conv.attrs["_inputs"][0] == "s" and conv.attrs["_inputs"][4] == "g"
    assert not [n for n in lowered.graph if n.op == "onnx.Mul" and "g" in n.attrs["_inputs"]]
    producer = {v: n.name for n in lowered.graph for v in n.attrs.get("_outputs", ())}
    edges = {(e.src, e.dst_port) for e in lowered.graph.in_edges(conv.name)}
    assert edges == {(producer["s"], "i0"), (producer["g"], "i4")}
    source, got = _compiled_outputs(squeeze_excitation_model())
    assert ".reshape(1, -1, 1, 1)" in source
    assert rel_err(got["ort:y"], got["y"]) < 1e-4


@pytest.mark.parametrize(
    "proto",
    [
        squeeze_excitation_model(batch=2),  # one gate per image: no single weight
        squeeze_excitation_model(size=16),  # the activation (8k values) is not much larger than the weight
        squeeze_excitation_model(gated_output=True),  # s * g is read elsewhere too
    ],
    ids=["batch 2", "small map", "product read elsewhere"],
)
def test_a_gate_stays_a_multiply_where_folding_it_does_not_apply_or_pay(proto: onnx.ModelProto) -> None:
    assert not _gated_convs(for_graph_compiler(prepare(proto)))


def test_a_gated_conv_lowers_only_for_a_graph_compiler() -> None:
    from reflow.onnx.ops import Call, rule

    attrs = {"kernel_shape": [1, 1], "activation": "none", "kernel": "onednn"}
    with pytest.raises(ValueError, match="graph compiler"):
        rule("FusedConv").lower(Call(("x", "w", "b", "None", "g"), attrs))


@needs_onednn_graph
def test_a_squeeze_path_at_batch_1_runs_as_vector_products_beside_the_compiler() -> None:
    """At batch 1 the squeeze path (global pool, two 1x1 convs on one pixel, the gate's sigmoid) is a mean,
    two matrix-vector products and in-place activations, which oneDNN Graph leaves to TorchScript: the
    compiled graph keeps a partition for each real conv only, and still answers as onnxruntime does."""
    model = prepare(squeeze_excitation_model())
    convs = {n.attrs["_inputs"][1]: n.name for n in model.graph if n.op == "onnx.FusedConv"}
    assert vector_convs(model) == {convs["w2"], convs["w3"]}
    lowered = for_graph_compiler(model)
    assert not [n for n in lowered.graph if n.op == "onnx.Sigmoid"]  # the gate's, absorbed by its conv
    gate = lowered.graph.node(convs["w3"])
    assert gate.attrs["activation"] == "sigmoid" and gate.attrs["_outputs"] == ["g"]
    assert {e.dst for e in lowered.graph.out_edges(gate.name)} == {convs["w4"]}  # the gate folded there
    (pool,) = [n for n in lowered.graph if n.op == "onnx.GlobalAveragePool"]
    assert "window" not in pool.attrs
    source, got = _compiled_outputs(squeeze_excitation_model())
    assert "torch.mv(" in source and "torch.addmv(" in source and ".sigmoid_()" in source
    assert rel_err(got["ort:y"], got["y"]) < 1e-4
    graph = torch.jit.last_executed_optimized_graph()
    partitions = [n for n in graph.nodes() if n.kind() == "prim::oneDNNFusionGuard"]
    assert len(partitions) == 2  # the 3x3 conv and the gated 1x1 conv; 5 with the squeeze path inside


def test_no_vector_products_at_batch_2_or_on_a_larger_map() -> None:
    assert not vector_convs(prepare(squeeze_excitation_model(batch=2)))
    assert not vector_convs(prepare(light_model("resnet50", batch=1)))  # its 1x1 convs read 7x7 maps at least


@pytest.mark.parametrize(
    "activation, scalars, reference",
    [
        ("none", [], lambda y: y),
        ("relu", [], torch.relu),
        ("hardtanh", [0.0, 6.0], lambda y: y.clamp(0.0, 6.0)),
        ("swish", [], torch.nn.functional.silu),
        ("sigmoid", [], torch.sigmoid),
    ],
)
def test_a_vector_conv_equals_the_conv_with_its_activation(
    activation: str, scalars: list[float], reference: Any
) -> None:
    attrs = {
        "kernel_shape": [1, 1],
        "activation": activation,
        "scalars": scalars,
        "kernel": "graph",
        "vector": True,
    }
    x, w, b = torch.randn(1, 24, 1, 1), torch.randn(40, 24, 1, 1), torch.randn(40)
    want = reference(torch.nn.functional.conv2d(x, w, b))
    (got,) = compile_call("FusedConv", [True, True, True], attrs, 1, 17)(x, w, b)
    torch.testing.assert_close(got, want)
    (got,) = compile_call("FusedConv", [True, True], attrs, 1, 17)(x, w)  # no bias: torch.mv
    torch.testing.assert_close(got, reference(torch.nn.functional.conv2d(x, w)))


def test_a_sigmoid_activation_lowers_only_for_a_vector_conv() -> None:
    from reflow.onnx.ops import Call, rule

    attrs = {"kernel_shape": [1, 1], "activation": "sigmoid", "kernel": "graph"}
    with pytest.raises(ValueError, match="vector"):
        rule("FusedConv").lower(Call(("x", "w", "b"), attrs))


def dense_block_model(
    layers: int = 3, pairwise: bool = False, conv_reads_last: bool = False
) -> onnx.ModelProto:
    """A dense block: layer k concatenates the block's input and the k - 1 layers' outputs (all of them, as
    torchvision exports it, or the previous concat and the newest output with ``pairwise``, as the light
    densenet121 does), then BatchNorm -> Relu -> 1x1 conv -> Relu -> 3x3 conv (4 new channels); a last
    concat feeds BatchNorm -> Relu -> 1x1 conv -> y, or, with ``conv_reads_last``, the 1x1 conv directly."""
    rng = np.random.default_rng(0)
    c0, growth, size = 8, 4, 6
    inits: list[onnx.TensorProto] = []
    nodes: list[onnx.NodeProto] = []

    def add(name: str, shape: tuple[int, ...], low: float = -1.0) -> str:
        inits.append(numpy_helper.from_array(rng.uniform(low, 1, shape).astype(np.float32), name))
        return name

    def bn_relu(x: str, c: int, tag: str) -> str:
        ins = [x, add(f"s{tag}", (c,)), add(f"b{tag}", (c,)), add(f"m{tag}", (c,)), add(f"v{tag}", (c,), 0.5)]
        nodes.append(helper.make_node("BatchNormalization", ins, [f"n{tag}"]))
        nodes.append(helper.make_node("Relu", [f"n{tag}"], [f"r{tag}"]))
        return f"r{tag}"

    feats, prev = ["x"], ""
    for k in range(layers + 1):
        ins = [prev, feats[-1]] if pairwise and prev else list(feats)
        nodes.append(helper.make_node("Concat", ins, [f"cat{k}"], axis=1))
        prev, c = f"cat{k}", c0 + growth * k
        if k == layers:
            break
        r = bn_relu(prev, c, str(k))
        nodes.append(helper.make_node("Conv", [r, add(f"w{k}a", (16, c, 1, 1))], [f"h{k}"]))
        nodes.append(helper.make_node("Relu", [f"h{k}"], [f"hr{k}"]))
        w = add(f"w{k}b", (growth, 16, 3, 3))
        nodes.append(helper.make_node("Conv", [f"hr{k}", w], [f"f{k}"], pads=[1] * 4))
        feats.append(f"f{k}")
    last = prev if conv_reads_last else bn_relu(prev, c, "out")
    nodes.append(helper.make_node("Conv", [last, add("wy", (5, c, 1, 1))], ["y"]))
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, c0, size, size])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 5, size, size])
    graph = helper.make_graph(nodes, "dense_block", [x], [y], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _concat_names(model: Any) -> dict[str, str]:
    return {n.attrs["_outputs"][0]: n.name for n in model.graph if n.op == "onnx.Concat"}


@needs_onednn_graph
@pytest.mark.parametrize("pairwise", [False, True])
def test_a_dense_blocks_concats_share_one_buffer_and_match_onnxruntime(pairwise: bool) -> None:
    """Each concat of a dense block copies only the output it adds into one buffer (the first allocates
    it), the BatchNorm + ReLU before each layer reads the buffer's view as torch ops, and the compiled graph
    holds no concat at all."""
    proto = dense_block_model(pairwise=pairwise)
    model = prepare(proto)
    names = _concat_names(model)
    assert concat_chains(model) == [[names[f"cat{k}"] for k in range(4)]]
    lowered = for_graph_compiler(model)
    first, *rest = (lowered.graph.node(names[f"cat{k}"]) for k in range(4))
    assert first.attrs["chain_channels"] == 8 + 3 * 4
    producer = {v: n.name for n in lowered.graph for v in n.attrs.get("_outputs", ())}
    for k, node in enumerate(rest):  # each reads the one before it and the output it adds
        assert node.attrs["chain_grows"] and node.attrs["_inputs"] == [f"cat{k}", f"f{k}"]
        assert {e.src for e in lowered.graph.in_edges(node.name)} == {names[f"cat{k}"], producer[f"f{k}"]}
    affines = [n for n in lowered.graph if n.op == "onnx.ChannelAffine"]
    assert len(affines) == 4 and all("kernel" not in n.attrs for n in affines)
    source, got = _compiled_outputs(proto)
    serial = source.split("def forward_serial")[1].split("\ndef ")[0]
    assert serial.count("onnx_concat_grow(") == 3 and "torch.cat(" not in serial
    assert rel_err(got["ort:y"], got["y"]) < 1e-4
    assert "aten::cat" not in str(torch.jit.last_executed_optimized_graph())


def test_a_chain_stops_before_a_concat_whose_output_a_conv_reads() -> None:
    """A conv in oneDNN Graph needs a dense input, not the buffer's strided view: the concat it reads stays
    a torch.cat, and the chain is the concats before it."""
    model = prepare(dense_block_model(conv_reads_last=True))
    names = _concat_names(model)
    assert concat_chains(model) == [[names[f"cat{k}"] for k in range(3)]]
    lowered = for_graph_compiler(model)
    assert "chain_grows" not in lowered.graph.node(names["cat3"]).attrs
    assert not concat_chains(prepare(dense_block_model(layers=1, conv_reads_last=True)))  # one concat left


def test_concat_start_and_grow_equal_torch_cat_and_share_one_buffer() -> None:
    parts = [torch.randn(2, c, 3, 5) for c in (4, 3, 2)]
    v1 = onnx_concat_start(9, parts[0])
    v2 = onnx_concat_grow(v1, parts[1])
    v3 = onnx_concat_grow(v2, parts[2])
    assert torch.equal(v3, torch.cat(parts, 1)) and torch.equal(v2, torch.cat(parts[:2], 1))
    assert torch.equal(v1, parts[0])  # later writes land after the channels an earlier view shows
    assert v1.data_ptr() == v3.data_ptr() and v3.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(onnx_concat_start(9, *parts), torch.cat(parts, 1))


@needs_onednn_graph
def test_the_light_densenet121_compiled_with_its_concat_chains_matches_onnxruntime() -> None:
    """A model nobody here wrote (onnx's light densenet121: its 58 concats in 4 chains)."""
    proto = light_model("densenet121", batch=1)
    assert [len(c) for c in concat_chains(prepare(proto))] == [6, 12, 24, 16]
    _, got = _compiled_outputs(proto)
    (out,) = [k for k in got if not k.startswith("ort:")]
    assert rel_err(got[f"ort:{out}"], got[out]) < 1e-4
