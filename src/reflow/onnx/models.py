"""Models to test and benchmark on, all made by code: nothing is downloaded.

* The nine ``light_*`` models shipped in the onnx package (onnx/backend/test/data/light) have every weight
  set to 0.02 by ConstantOfShape. :func:`randomize_weights` replaces each weight with seeded random values of
  a sensible scale (fan-in scaled for convolutions and dense layers, positive BatchNorm variances and scales),
  so that numerical comparisons mean something.
* :func:`wide_model` builds an inception-like stack of blocks with a chosen number of parallel branches.
* :func:`set_batch` changes a model's batch size (its input's first dimension and literal Reshape targets).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from reflow.errors import OnnxImportError

LIGHT_MODELS = (
    "bvlc_alexnet",
    "densenet121",
    "inception_v1",
    "inception_v2",
    "resnet50",
    "shufflenet",
    "squeezenet",
    "vgg19",
    "zfnet512",
)


def light_model_path(name: str) -> Path:
    """Path of ``light_<name>.onnx`` inside the installed onnx package."""
    short = name.removeprefix("light_")
    if short not in LIGHT_MODELS:
        raise OnnxImportError(f"unknown light model {name!r}; choose one of {', '.join(LIGHT_MODELS)}")
    return (
        Path(os.path.dirname(onnx.__file__)) / "backend" / "test" / "data" / "light" / f"light_{short}.onnx"
    )


def _weight_roles(model: onnx.ModelProto) -> dict[str, tuple[str, int]]:
    """For each value used as a weight: (consuming op type, input position)."""
    roles: dict[str, tuple[str, int]] = {}
    for n in model.graph.node:
        for k, v in enumerate(n.input):
            roles.setdefault(v, (n.op_type, k))
    # a weight reaching its consumer through Unsqueeze (the light models' BatchNorm scale/shift) keeps
    # its role
    for n in model.graph.node:
        if n.op_type == "Unsqueeze" and n.output[0] in roles:
            roles[n.input[0]] = (roles[n.output[0]][0] + "/unsqueezed", roles[n.output[0]][1])
    return roles


def _random_weight(
    shape: tuple[int, ...], role: tuple[str, int], rng: np.random.Generator
) -> np.ndarray[Any, Any]:
    op, pos = role
    if op == "BatchNormalization" and pos in (1, 4):  # scale and variance: positive, near 1
        return rng.uniform(0.5, 1.5, shape).astype(np.float32)
    if op == "BatchNormalization" and pos in (2, 3):  # shift and mean
        return (0.1 * rng.standard_normal(shape)).astype(np.float32)
    if op.endswith("/unsqueezed") and op.startswith("Mul"):
        return rng.uniform(0.5, 1.5, shape).astype(np.float32)
    if len(shape) >= 2:
        fan_in = int(np.prod(shape[1:])) if op != "Gemm" or pos != 1 else int(shape[-1])
        bound = np.sqrt(3.0 / max(fan_in, 1))
        return rng.uniform(-bound, bound, shape).astype(np.float32)
    return (0.05 * rng.standard_normal(shape)).astype(np.float32)


def randomize_weights(model: onnx.ModelProto | str | os.PathLike[str], seed: int = 0) -> onnx.ModelProto:
    """A copy with every float weight (ConstantOfShape-built or initializer) replaced by seeded random values.

    BatchNorm variances and scales stay positive; conv/dense weights are scaled by fan-in so activations keep
    a sensible size through deep models.
    """
    m = onnx.ModelProto()
    m.CopyFrom(model if isinstance(model, onnx.ModelProto) else onnx.load(os.fspath(model)))
    rng = np.random.default_rng(seed)
    g = m.graph
    inits = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    graph_inputs = {i.name for i in g.input} - set(inits)
    roles = _weight_roles(m)
    keep_nodes = []
    new_inits: dict[str, np.ndarray[Any, Any]] = {}
    for n in g.node:
        is_weight = (
            n.op_type == "ConstantOfShape"
            and n.input[0] in inits
            and helper.get_attribute_value(n.attribute[0]).data_type == TensorProto.FLOAT
            if n.attribute
            else False
        )
        if is_weight:
            shape = tuple(int(d) for d in inits[n.input[0]].reshape(-1))
            new_inits[n.output[0]] = _random_weight(shape, roles.get(n.output[0], ("?", 0)), rng)
        else:
            keep_nodes.append(n)
    for name, arr in inits.items():
        if arr.dtype == np.float32 and name not in graph_inputs:
            new_inits[name] = _random_weight(tuple(arr.shape), roles.get(name, ("?", 0)), rng)
    del g.node[:]
    g.node.extend(keep_nodes)
    used = {v for n in keep_nodes for v in n.input}
    kept = [i for i in g.initializer if i.name not in new_inits and i.name in used]
    del g.initializer[:]
    g.initializer.extend(kept)
    g.initializer.extend(numpy_helper.from_array(a, name) for name, a in new_inits.items())
    # old-style models list initializers as inputs too: keep only the real inputs
    real_inputs = [i for i in g.input if i.name in graph_inputs]
    del g.input[:]
    g.input.extend(real_inputs)
    m.ir_version = max(m.ir_version, 4)  # IR 4+: initializers need not be listed as graph inputs
    return m


def set_batch(model: onnx.ModelProto, batch: int) -> onnx.ModelProto:
    """A copy whose inputs (and outputs) have first dimension ``batch``. Reshape targets that spell the old
    batch size as a literal first entry get -1 (inferred), so the model also runs on any batch slice."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    g = m.graph
    old = None
    inits = {i.name for i in g.initializer}
    for vi in [*g.input, *g.output]:
        if vi.name in inits:
            continue
        dims = vi.type.tensor_type.shape.dim
        if dims:
            old = old or dims[0].dim_value
            dims[0].dim_value = batch
    del g.value_info[:]
    shape_inputs = {n.input[1] for n in g.node if n.op_type == "Reshape" and len(n.input) > 1}
    for i, init in enumerate(g.initializer):
        if init.name in shape_inputs:
            arr = numpy_helper.to_array(init).copy()
            if arr.size and arr.reshape(-1)[0] == old:
                # -1 (inferred) rather than the number: the code then also runs on batch slices
                arr.reshape(-1)[0] = -1 if -1 not in arr else batch
                g.initializer[i].CopyFrom(numpy_helper.from_array(arr, init.name))
    return m


def light_model(name: str, seed: int = 0, batch: int = 1) -> onnx.ModelProto:
    """A light_* model with seeded random weights, at the given batch size."""
    m = randomize_weights(light_model_path(name), seed)
    return set_batch(m, batch) if batch != 1 else m


def wide_model(
    branches: int,
    *,
    blocks: int = 3,
    channels: int = 32,
    size: int = 28,
    batch: int = 1,
    seed: int = 0,
    opset: int = 13,
) -> onnx.ModelProto:
    """An inception-like model: ``blocks`` blocks of ``branches`` parallel conv branches joined by Concat.

    Branch ``b`` is a 1x1 conv then ``b % 3`` extra 3x3 convs (so branches differ in length), each followed by
    Relu; a 1x1 conv after the Concat brings the channels back to ``channels``.
    """
    if branches < 1:
        raise ValueError(f"wide_model needs at least one branch, got {branches}")
    rng = np.random.default_rng(seed)
    nodes: list[onnx.NodeProto] = []
    inits: list[TensorProto] = []

    def weight(name: str, shape: tuple[int, ...]) -> str:
        bound = np.sqrt(3.0 / max(int(np.prod(shape[1:])), 1))
        inits.append(numpy_helper.from_array(rng.uniform(-bound, bound, shape).astype(np.float32), name))
        return name

    def conv(x: str, cin: int, cout: int, k: int, name: str) -> str:
        w = weight(f"{name}_w", (cout, cin, k, k))
        b = weight(f"{name}_b", (cout, 1))
        inits[-1] = numpy_helper.from_array(numpy_helper.to_array(inits[-1]).reshape(-1), f"{name}_b")
        nodes.append(
            helper.make_node(
                "Conv", [x, w, b], [f"{name}_c"], name=name, kernel_shape=[k, k], pads=[k // 2] * 4
            )
        )
        nodes.append(helper.make_node("Relu", [f"{name}_c"], [f"{name}_r"], name=f"{name}_relu"))
        return f"{name}_r"

    x = "input"
    for blk in range(blocks):
        outs = []
        for b in range(branches):
            y = conv(x, channels, channels // 2, 1, f"b{blk}_br{b}_0")
            for j in range(b % 3):
                y = conv(y, channels // 2, channels // 2, 3, f"b{blk}_br{b}_{j + 1}")
            outs.append(y)
        nodes.append(helper.make_node("Concat", outs, [f"b{blk}_cat"], name=f"b{blk}_concat", axis=1))
        x = conv(f"b{blk}_cat", branches * (channels // 2), channels, 1, f"b{blk}_proj")
    nodes.append(helper.make_node("GlobalAveragePool", [x], ["pooled"], name="pool"))
    nodes.append(helper.make_node("Flatten", ["pooled"], ["output"], name="flatten", axis=1))
    graph = helper.make_graph(
        nodes,
        f"wide{branches}",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, channels, size, size])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [batch, channels])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def transformer_model(
    layers: int = 2,
    d_model: int = 256,
    heads: int = 4,
    seq: int = 64,
    ff: int = 1024,
    seed: int = 0,
    dynamic_batch: bool = True,
) -> onnx.ModelProto:
    """A ``torch.nn.TransformerEncoder`` (batch first, seeded random weights) exported by torch's TorchScript
    ONNX exporter at batch 1 with a dynamic batch axis, as most transformer ONNX files were made (without
    it, the exporter writes batch x heads into its reshape targets as a number)."""
    import tempfile

    import torch

    # grad on, even inside a caller's inference_mode or no_grad: without grad eval-mode attention takes
    # torch's fused fast path, which has no export
    with torch.inference_mode(False), torch.enable_grad(), tempfile.TemporaryDirectory() as tmp:
        torch.manual_seed(seed)
        layer = torch.nn.TransformerEncoderLayer(d_model, heads, ff, dropout=0.0, batch_first=True)
        encoder = torch.nn.TransformerEncoder(layer, layers, enable_nested_tensor=False).eval()
        x = torch.randn(1, seq, d_model, generator=torch.Generator().manual_seed(seed + 1))
        path = Path(tmp) / "transformer.onnx"
        torch.onnx.export(
            encoder,
            (x,),
            path,
            dynamo=False,
            opset_version=17,
            input_names=["input"],
            output_names=["output"],
            dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}} if dynamic_batch else None,
        )
        return onnx.load(os.fspath(path))
