"""Fuse each 2-D convolution with the residual Add and the Relu that follow it into one ``FusedConv`` node.

Policy. On one CPU core a convolution network's time is its convolutions plus the passes over memory between
them: a ``Relu`` after every conv, an ``Add``/``Sum`` joining a residual branch. oneDNN can apply both while
the convolution's output tile is still in cache, and can read the weight in a blocked layout prepared once at
load time instead of reordering it on every call (onnxruntime does both; without them reflow's serial code
was about 1.3-2x slower than onnxruntime's per core). So every float Conv with constant weights, symmetric
pads and a known 4-D input shape becomes a ``FusedConv`` (see ``reflow.onnx.ops.nn``), and absorbs

* an ``Add`` or two-input ``Sum`` that is the only consumer of its output and adds a run-time value of the
  same shape (the residual, input ``Z``), then
* an activation that is the only consumer of what it has so far: a ``Relu``; a ``Clip`` with constant
  bounds (ReLU6: oneDNN's "hardtanh"; onnxruntime folds it into its conv too: mobilenet_v2's 35 Clips
  cost 6.7 of its 20 ms of ops as separate passes); or a SiLU written as ``Mul(x, Sigmoid(x))`` ("swish",
  efficientnet's 65). After a residual add only a Relu is absorbed (oneDNN fuses no other unary op after
  a binary one).

A ``ChannelAffine`` (a BatchNorm made by affine_folding) absorbs its sole-reader ``Relu`` the same way.
A value that is a model output or that another node also reads is never absorbed, so the rewrite changes
nothing but float rounding of the fused add. Run it after
:func:`reflow.onnx.affine_folding.fold_affine_into_conv` (a BatchNorm between a Conv and its Relu blocks it).
"""

from __future__ import annotations

import math
from dataclasses import replace

from reflow.graph import Graph, Node, Port, topo_order
from reflow.onnx.importer import ImportedModel

# Which kernel a FusedConv uses. A oneDNN fused call costs about 20-25 us more to make than F.conv2d (measured
# on 1 thread: an 8-channel 4x4 conv takes 28 us vs 4 us), but skips F.conv2d's per-call weight reorder and
# its separate add and ReLU passes. Timing every conv of the benchmark models both ways, each alone, oneDNN
# won for spatial kernels from about 5 MFLOP and for 1x1 kernels from about 20 MFLOP; below that, F.conv2d
# did. Inside whole runs (issue 18 round 9, benchmarks/onnx_codegen_ab.py) the fused call won on spatial
# kernels from 0.5 MFLOP (the depthwise convs of efficientnet_b0 at batch 1: 1.08-1.16x on 2 threads in
# three A/Bs, the other models level), where F.conv2d's separate activation pass reads its output again.
ONEDNN_MIN_FLOPS = 5e5
ONEDNN_MIN_FLOPS_1X1 = 2e7
# A 1x1 convolution (stride 1, no padding, one group) whose output has at most this many elements runs as
# one GEMM over the channels-last pixels (kernel "linear", onnx_conv1x1). torch sends such a conv at batch
# below 16 on one thread to its reference kernel, and oneDNN's conv call costs ~20 us more. With the GEMM on
# MKL (F.linear) oneDNN's conv won above ~200k output elements; on oneDNN's matrix product, whose post-ops
# fuse the bias, residual and activation too, the GEMM won on the sum of every model's pointwise convs at
# batch 1 and 8 (benchmarks/onnx_conv_kernels.py, docs/benchmarks.md round 6): no size limit.
LINEAR_MAX_OUTPUT = math.inf
# ...except a tiny one at batch 1 (squeeze-excitation's, on a 1x1 image), below this many FLOPs: there
# oneDNN's ~16 us per call is most of the time, and F.conv2d takes 3-7 us (efficientnet_b0's 1152 -> 48 on
# 1 or 2 threads: 18-19 vs 6 us). At batch > 1 F.conv2d splits the batch across threads and took 50 us on 2.
ATEN_MAX_FLOPS_1X1_BATCH_1 = 1e6


def _shape(model: ImportedModel, value: str) -> tuple[int, ...] | None:
    """A float32 value's static shape."""
    vi = model.values.get(value)
    return model.static_shape(value) if vi is not None and vi.dtype == "float32" else None


def _fusable_conv(model: ImportedModel, node: Node) -> bool:
    if node.op != "onnx.Conv":
        return False
    ins, attrs = node.attrs["_inputs"], node.attrs
    pads = tuple(attrs.get("pads", (0, 0, 0, 0)))
    x_shape = _shape(model, ins[0])
    return (
        ins[1] in model.weights
        and model.weights[ins[1]].dtype.name == "float32"
        and model.weights[ins[1]].ndim == 4
        and (len(ins) < 3 or not ins[2] or ins[2] in model.weights)
        and attrs.get("auto_pad", "NOTSET") in ("NOTSET", "VALID")
        and len(pads) == 4
        and pads[:2] == pads[2:]
        and x_shape is not None
        and len(x_shape) == 4
    )


def _kernel(model: ImportedModel, conv: Node) -> str:
    """ "linear" for a pointwise convolution (but a tiny one at batch 1), "onednn" for one big enough to
    repay oneDNN's call overhead, else "aten"."""
    weight = model.weights[conv.attrs["_inputs"][1]]
    out = _shape(model, conv.attrs["_outputs"][0])
    if out is None:
        return "onednn"
    flops = 2.0 * weight[0].size * out[0] * out[1] * out[2] * out[3]
    if pointwise(conv, weight.shape) and math.prod(out) <= LINEAR_MAX_OUTPUT:
        return "aten" if out[0] == 1 and flops < ATEN_MAX_FLOPS_1X1_BATCH_1 else "linear"
    spatial = weight.shape[2] * weight.shape[3] > 1
    return "onednn" if flops >= (ONEDNN_MIN_FLOPS if spatial else ONEDNN_MIN_FLOPS_1X1) else "aten"


def pointwise(conv: Node, weight_shape: tuple[int, ...]) -> bool:
    """A 1x1 convolution with stride 1, no padding and one group: a matrix product over the pixels."""
    attrs = conv.attrs
    return (
        tuple(weight_shape[2:]) == (1, 1)
        and attrs.get("group", 1) == 1
        and tuple(attrs.get("strides", (1, 1))) == (1, 1)
        and not any(attrs.get("pads", (0, 0, 0, 0)))
        and attrs.get("auto_pad", "NOTSET") in ("NOTSET", "VALID")
    )


def _activation(
    model: ImportedModel, value: str, readers: dict[str, list[str]], g: Graph, outputs: set[str]
) -> tuple[str, list[float], list[str], str] | None:
    """(oneDNN unary op, its scalars, the nodes it absorbs, its output) for the activation that alone reads
    ``value``, or None."""
    names = readers[value]
    if value in outputs or not names or not all(n in g for n in names):
        return None
    nodes = [g.node(n) for n in names]
    first = nodes[0]
    if len(nodes) == 1 and first.op == "onnx.Relu":
        return "relu", [], [first.name], first.attrs["_outputs"][0]
    if len(nodes) == 1 and first.op == "onnx.Clip":
        bounds = clip_bounds(model, first)
        if bounds is not None:
            return "hardtanh", list(bounds), [first.name], first.attrs["_outputs"][0]
    if len(nodes) == 2 and {n.op for n in nodes} == {"onnx.Sigmoid", "onnx.Mul"}:
        sig = next(n for n in nodes if n.op == "onnx.Sigmoid")
        mul = next(n for n in nodes if n.op == "onnx.Mul")
        s_out = sig.attrs["_outputs"][0]
        pair = sorted(mul.attrs["_inputs"]) == sorted([value, s_out])
        if pair and readers[s_out] == [mul.name] and s_out not in outputs:
            return "swish", [], [sig.name, mul.name], mul.attrs["_outputs"][0]
    return None


def clip_bounds(model: ImportedModel, clip: Node) -> tuple[float, float] | None:
    """A Clip's (min, max) as floats when both are constants (absent ones are +-inf), else None."""
    ins = clip.attrs["_inputs"]
    if clip.attrs["_opset"] < 11:
        return float(clip.attrs.get("min", -math.inf)), float(clip.attrs.get("max", math.inf))
    bounds = []
    for k, default in ((1, -math.inf), (2, math.inf)):
        v = ins[k] if k < len(ins) else ""
        if v and (v not in model.weights or model.weights[v].size != 1):
            return None
        bounds.append(float(model.weights[v].reshape(-1)[0]) if v else default)
    return bounds[0], bounds[1]


def fuse_conv_activations(model: ImportedModel) -> ImportedModel:
    """A copy of ``model`` whose 2-D Convs are FusedConv nodes with their residual Add and Relu absorbed."""
    g = model.graph
    outputs = {vi.name for vi in model.outputs}
    readers = model.readers()

    def sole_reader(value: str) -> Node | None:
        names = readers[value]
        if value in outputs or len(names) != 1 or names[0] not in g:
            return None
        return g.node(names[0])

    group: dict[str, str] = {}  # absorbed node -> the conv it joined
    fused: dict[str, Node] = {}
    for name in topo_order(g):
        node = g.node(name)
        relu = sole_reader(node.attrs["_outputs"][0]) if node.op == "onnx.ChannelAffine" else None
        if node.op == "onnx.ChannelAffine" and relu is not None and relu.op == "onnx.Relu":
            attrs = {**node.attrs, "activation": "relu", "_outputs": relu.attrs["_outputs"]}
            attrs["folded"] = [*attrs.get("folded", []), relu.name]
            fused[name] = Node(name, node.op, node.inputs, node.outputs, node.cost, attrs)
            group[relu.name] = name
        if not _fusable_conv(model, node):
            continue
        ins = node.attrs["_inputs"]
        out, z, activation = node.attrs["_outputs"][0], "", "none"
        scalars: list[float] = []
        absorbed: list[str] = []
        add = sole_reader(out)
        if (
            add is not None
            and add.name not in group
            and (add.op == "onnx.Add" or (add.op == "onnx.Sum" and len(add.attrs["_inputs"]) == 2))
        ):
            other = [v for v in add.attrs["_inputs"] if v != out]
            if (
                len(other) == 1
                and other[0] not in model.weights
                and _shape(model, other[0]) is not None
                and _shape(model, other[0]) == _shape(model, out)
            ):
                z, out = other[0], add.attrs["_outputs"][0]
                absorbed.append(add.name)
        act = _activation(model, out, readers, g, outputs)
        if act is not None and act[0] != "relu" and z:
            act = None
        if act is not None:
            activation, scalars, names, out = act
            absorbed.extend(names)
        attrs = {k: v for k, v in node.attrs.items() if not k.startswith("_")}
        attrs.update(
            {
                "kernel_shape": list(model.weights[ins[1]].shape[2:]),
                "kernel": _kernel(model, node),
                "activation": activation,
                "scalars": scalars,
                "fused": [*attrs.get("folded", []), *absorbed],
                "_inputs": [ins[0], ins[1], ins[2] if len(ins) > 2 else "", z],
                "_outputs": [out],
                "_opset": node.attrs["_opset"],
            }
        )
        attrs.pop("folded", None)
        in_ports = (Port("i0"), Port("i3")) if z else (Port("i0"),)
        fused[name] = Node(name, "onnx.FusedConv", in_ports, (Port("o0"),), node.cost, attrs)
        group.update({a: name for a in absorbed})

    ng = Graph(g.name)
    for node in g:
        if node.name not in group:
            ng.add_node(fused.get(node.name, node))
    for e in g.edges:
        src, src_port = (group[e.src], "o0") if e.src in group else (e.src, e.src_port)
        if e.dst not in group:
            ng.connect(src, src_port, e.dst, e.dst_port, e.size)
        elif src != group[e.dst]:  # the residual entering the fused node
            ng.connect(src, src_port, group[e.dst], "i3", e.size)
    return replace(model, graph=ng)
