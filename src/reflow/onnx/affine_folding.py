"""Fold per-channel affine ops that follow a convolution into the convolution's weights.

Policy. An inference graph often runs ``Conv -> BatchNormalization`` (and, in the light models, a further
``Mul``/``Add`` by per-channel constants). All of these are affine maps per output channel, so they compose
into the convolution: ``w' = w * k``, ``b' = b * k + c`` per channel. Folding removes whole passes over the
activations (onnxruntime does the same). A BatchNorm that follows no convolution (densenet's
``BatchNorm -> Mul -> Add -> Relu -> Conv``) heads its own chain and becomes reflow's ``ChannelAffine``
(``x * scale + shift``, one ``torch.addcmul``) with the Mul and Add folded into its scale and shift: three
passes over the activations become one (conv_fusion then fuses the Relu into it, in place). A follower is
folded only when the head's output feeds it alone, its parameters are constants, and (for Mul/Add) the
constant has one value per channel; anything else is left alone, so the rewrite never changes what the
model computes beyond float rounding.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from reflow.graph import Graph, Node, topo_order
from reflow.onnx.importer import ImportedModel

Array = np.ndarray[Any, Any]


def _per_channel(a: Array, channels: int) -> Array | None:
    """``a`` as ``channels`` values if it broadcasts as one value per channel of an NCHW tensor."""
    if a.size == 1:
        return np.full(channels, a.reshape(-1)[0], dtype=np.float32)
    shape = list(a.shape)
    while shape and shape[-1] == 1:
        shape.pop()
    if shape and shape[-1] == channels and int(np.prod(shape)) == channels and len(a.shape) >= 3:
        return a.reshape(channels).astype(np.float32)
    return None


def _affine(
    follower: Node, weights: dict[str, Array], channels: int, conv_out: str
) -> tuple[Array, Array] | None:
    """(scale, shift) per channel if ``follower`` is a foldable affine map of the conv output, else None."""
    ins = follower.attrs["_inputs"]
    op = follower.op.removeprefix("onnx.")
    if op == "BatchNormalization" and len(follower.attrs["_outputs"]) == 1:
        if ins[0] != conv_out or not all(v in weights for v in ins[1:5]):
            return None
        s, b, m, v = (weights[n].astype(np.float64) for n in ins[1:5])
        k = s / np.sqrt(v + float(follower.attrs.get("epsilon", 1e-5)))
        return k, b - m * k
    if op in ("Mul", "Add") and len(ins) == 2:
        other = ins[1] if ins[0] == conv_out else ins[0]
        if other not in weights or conv_out not in ins or ins[0] == ins[1]:
            return None
        c = _per_channel(weights[other], channels)
        if c is None:
            return None
        one, zero = np.ones(channels), np.zeros(channels)
        return (c.astype(np.float64), zero) if op == "Mul" else (one, c.astype(np.float64))
    return None


def fold_affine_into_conv(model: ImportedModel) -> ImportedModel:
    """A copy of ``model`` with BatchNorm and per-channel Mul/Add after each Conv folded into the Conv, and
    each other BatchNorm, with the per-channel Mul/Add after it, made one ChannelAffine."""
    g, weights = model.graph, dict(model.weights)
    absorbed: dict[str, str] = {}  # follower node -> conv node it was folded into
    convs: dict[str, Node] = {}
    for name in topo_order(g):
        node = g.node(name)
        if name in absorbed:
            continue
        if node.op == "onnx.BatchNormalization":  # a chain headed by a BatchNorm: w is its scale
            vi = model.values.get(node.attrs["_inputs"][0])
            rank = len(vi.shape) if vi is not None and vi.shape is not None else 0
            head = _affine(node, weights, 0, node.attrs["_inputs"][0])
            if head is None or rank < 2:
                continue
            w, b = head
        elif node.op == "onnx.Conv" and node.attrs["_inputs"][1] in weights:
            w = weights[node.attrs["_inputs"][1]].astype(np.float64)
            bias_name = node.attrs["_inputs"][2] if len(node.attrs["_inputs"]) > 2 else ""
            if bias_name and bias_name not in weights:
                continue
            b = weights[bias_name].astype(np.float64) if bias_name else np.zeros(w.shape[0])
        else:
            continue
        out, current, folded = node.attrs["_outputs"][0], node, 0
        outputs = {vi.name for vi in model.outputs}
        while True:
            succ = g.successors(current.name)
            if len(succ) != 1 or out in outputs:
                break
            follower = g.node(succ[0])
            if not follower.op.startswith("onnx.") or len(g.in_edges(follower.name)) != 1:
                break
            ab = _affine(follower, weights, w.shape[0], out)
            if ab is None:
                break
            k, c = ab
            w = w * k.reshape(-1, *([1] * (w.ndim - 1)))
            b = b * k + c
            absorbed[follower.name] = name
            out, current, folded = follower.attrs["_outputs"][0], follower, folded + 1
        op = node.op
        if op == "onnx.BatchNormalization":  # becomes x * w + b, weights shaped to broadcast per channel
            op, folded = "onnx.ChannelAffine", folded + 1
            w, b = (a.reshape(1, -1, *([1] * (rank - 2))) for a in (w, b))
        if folded:
            wn, bn = f"{name}.folded_w", f"{name}.folded_b"
            weights[wn], weights[bn] = w.astype(np.float32), b.astype(np.float32)
            attrs = {k: v for k, v in node.attrs.items() if op == node.op or k.startswith("_")}
            attrs.update(
                {
                    "_inputs": [node.attrs["_inputs"][0], wn, bn],
                    "_outputs": [out],
                    "folded": [n for n, c in absorbed.items() if c == name],
                }
            )
            if op == "onnx.ChannelAffine":
                attrs["activation"] = "none"
            convs[name] = Node(node.name, op, node.inputs, node.outputs, node.cost, attrs)
    if not convs:
        return model
    ng = Graph(g.name)
    for node in g:
        if node.name not in absorbed:
            ng.add_node(convs.get(node.name, node))
    for e in g.edges:
        if e.dst in absorbed:
            continue
        src = absorbed.get(e.src, e.src)
        ng.connect(src, "o0" if e.src in absorbed else e.src_port, e.dst, e.dst_port, e.size)
    used = {v for n in ng for v in n.attrs.get("_inputs", ())}
    return replace(model, graph=ng, weights={k: v for k, v in weights.items() if k in used})
