"""Neural-network ops: convolution, pooling, normalization, dense layers, softmax, dropout."""

from __future__ import annotations

import math
from typing import Any

from reflow.onnx.ops import GRAPH, Call, FlopCall, lit, no_flops, numel, per_output_element, register


def _spatial(c: Call, kernel: tuple[int, ...]) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    n = len(kernel)
    strides = tuple(c.attrs.get("strides", (1,) * n))
    dilations = tuple(c.attrs.get("dilations", (1,) * n))
    pads = tuple(c.attrs.get("pads", (0,) * (2 * n)))
    return strides, dilations, pads


def _pad_input(c: Call, x: str, kernel: tuple[int, ...], value: str = "0.0") -> tuple[str, tuple[int, ...]]:
    """The input after any padding torch cannot express, and the symmetric padding left for torch."""
    strides, dilations, pads = _spatial(c, kernel)
    n = len(kernel)
    auto = c.attrs.get("auto_pad", "NOTSET")
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        upper = auto == "SAME_UPPER"
        return (
            f"onnx_same_pad({x}, {lit(kernel)}, {lit(strides)}, {lit(dilations)}, {upper}, {value})",
            (0,) * n,
        )
    if auto == "VALID" or (
        pads[:n] == pads[n:] and all(2 * p <= k for p, k in zip(pads[:n], kernel, strict=True))
    ):
        return x, (0,) * n if auto == "VALID" else pads[:n]
    torch_pads = [p for i in reversed(range(n)) for p in (pads[i], pads[i + n])]
    return f"F.pad({x}, {lit(torch_pads)}, value={value})", (0,) * n


def _conv(c: Call) -> str:
    kernel = tuple(c.attrs["kernel_shape"])
    strides, dilations, _ = _spatial(c, kernel)
    x, padding = _pad_input(c, c.arg(0), kernel)
    extra = "" if set(dilations) == {1} else f", dilation={lit(dilations)}"  # torch's defaults are omitted
    extra += "" if c.attrs.get("group", 1) == 1 else f", groups={c.attrs['group']}"
    args = f"{x}, {c.arg(1)}, {c.arg(2)}, stride={lit(strides)}, padding={lit(padding)}{extra}"
    return f"F.conv{len(kernel)}d({args})"


def _conv_flops(f: FlopCall) -> float:
    w = f.ins[1]
    per_out = 2 * numel(w[1:]) if w is not None else 2
    return float(per_out * numel(f.outs[0]))


register("Conv", _conv, _conv_flops)


def _graph_activation(expr: str, activation: str, scalars: tuple[float, ...]) -> str:
    """``activation`` (a fused conv's or dense layer's) applied out of place, as a graph compiler reads it."""
    if activation == "relu":
        return f"torch.relu({expr})"
    if activation == "hardtanh":
        return f"torch.clamp({expr}, {lit(scalars[0])}, {lit(scalars[1])})"
    if activation == "swish":
        return f"F.silu({expr})"
    return f"F.gelu({expr})" if activation == "gelu" else expr


# FusedConv is reflow's own op, made by reflow.onnx.conv_fusion from a 2-D float Conv and the Add and Relu
# that follow it (onnxruntime's com.microsoft FusedConv has the same inputs): X, W, B, Z (added, optional),
# G (optional, GRAPH kernel only: a per-channel gate X is multiplied by, folded into W by graph_compiler);
# attributes as Conv's (symmetric pads only), ``activation`` ("none", "relu", "hardtanh" clamping to the
# two ``scalars``, "swish", or "sigmoid" for a vector conv) and ``kernel``: "onednn" (one fused oneDNN call
# on a prepacked weight) or "aten" (F.conv2d, then the add and activation in place: cheaper to call, so
# better for small convolutions) or "linear" (a 1x1 convolution as one GEMM over the channels-last pixels,
# onnx_conv1x1) or GRAPH (plain out-of-place torch ops for a graph compiler to fuse: see
# reflow.onnx.graph_compiler; with ``vector`` set, a matrix-vector product the compiler leaves alone:
# graph_compiler.vector_convs).
def _fused_conv(c: Call) -> str:
    strides, dilations, pads = _spatial(c, tuple(c.attrs["kernel_shape"]))
    args = f"{lit(strides)}, {lit(pads[:2])}, {lit(dilations)}, {c.attrs.get('group', 1)}"
    activation, scalars = c.attrs["activation"], tuple(c.attrs.get("scalars", ()))
    if c.attrs.get("kernel") == GRAPH and c.attrs.get("vector"):
        return _vector_conv(c, activation, scalars)
    if activation == "sigmoid":
        raise ValueError("a FusedConv's sigmoid lowers only as a vector product: graph_compiler.vector_convs")
    if c.attrs.get("kernel") == GRAPH:
        # a gate (input 4, one value per input channel: graph_compiler.fold_gates) scales the weight; its
        # reshape hands it to torch, which multiplies the weight (oneDNN Graph rejects a weight it made)
        w = f"{c.arg(1)} * {c.arg(4)}.reshape(1, -1, 1, 1)" if c.has(4) else c.arg(1)
        expr = f"F.conv2d({c.arg(0)}, {w}, {c.arg(2)}, {args})"
        return _graph_activation(f"{expr} + {c.arg(3)}" if c.has(3) else expr, activation, scalars)
    if c.has(4):
        raise ValueError("a gated FusedConv (input 4) lowers only for a graph compiler (kernel 'graph')")
    if c.attrs.get("kernel") == "linear":
        extra = f", {lit(scalars)}" if scalars else ""
        return f"onnx_conv1x1({c.arg(0)}, {c.arg(1)}, {c.arg(2)}, {c.arg(3)}, {activation!r}{extra})"
    if c.attrs.get("kernel") == "aten":
        expr = f"F.conv2d({c.arg(0)}, {c.arg(1)}, {c.arg(2)}, {args})"
        expr += f".add_({c.arg(3)})" if c.has(3) else ""
        return _inplace_activation(expr, activation, scalars)
    extra = f", {lit(scalars)}" if scalars else ""
    return f"onnx_conv({c.arg(0)}, {c.arg(1)}, {c.arg(2)}, {c.arg(3)}, {args}, {activation!r}{extra})"


def _vector_conv(c: Call, activation: str, scalars: tuple[float, ...]) -> str:
    """A 1x1 conv on one image of one pixel as a matrix-vector product, its activation in place on the fresh
    product, which a graph compiler leaves alone (see graph_compiler.vector_convs)."""
    w, x = f"{c.arg(1)}.flatten(1)", f"{c.arg(0)}.reshape(-1)"
    expr = f"torch.addmv({c.arg(2)}, {w}, {x})" if c.has(2) else f"torch.mv({w}, {x})"
    return f"{_inplace_activation(expr, activation, scalars)}.view(1, -1, 1, 1)"


def _inplace_activation(expr: str, activation: str, scalars: tuple[float, ...]) -> str:
    """``activation`` (a fused conv's) applied in place to ``expr``, a fresh tensor: the eager lowering's
    counterpart of _graph_activation (and of kernels.onnx_activation_, which the prepacked kernels call)."""
    if activation == "relu":
        return expr + ".relu_()"
    if activation == "hardtanh":
        return expr + f".clamp_({lit(scalars[0])}, {lit(scalars[1])})"
    if activation == "swish":
        return f"F.silu({expr}, inplace=True)"
    if activation == "sigmoid":
        return expr + ".sigmoid_()"
    if activation != "none":
        raise ValueError(f"a FusedConv has no {activation!r} activation")
    return expr


def _pack_conv_weight(c: Call, input_shape: str) -> str | None:
    if c.attrs.get("kernel") == "linear":
        return f"onnx_pack_linear_weight({c.arg(1)}.flatten(1), {input_shape}, 1)"
    if c.attrs.get("kernel") in ("aten", GRAPH):
        return None
    strides, dilations, pads = _spatial(c, tuple(c.attrs["kernel_shape"]))
    group = c.attrs.get("group", 1)
    args = f"{lit(pads[:2])}, {lit(strides)}, {lit(dilations)}, {group}, {input_shape}"
    return f"onnx_pack_conv_weight({c.arg(1)}, {args})"


register("FusedConv", _fused_conv, _conv_flops, prepack=_pack_conv_weight)


def _centred_window(c: Call) -> tuple[int, ...] | None:
    """The radii of a pool with stride 1 whose odd window is centred on each cell (pads of half the window
    on both sides); None for any other pool."""
    kernel = tuple(c.attrs["kernel_shape"])
    strides, dilations, pads = _spatial(c, kernel)
    radius = tuple(k // 2 for k in kernel)
    odd = all(k % 2 for k in kernel)
    stride_one = set(strides) <= {1} and set(dilations) <= {1}
    plain = c.attrs.get("auto_pad", "NOTSET") == "NOTSET" and c.n_out == 1
    return radius if odd and stride_one and plain and pads == radius + radius else None


def _maxpool(c: Call) -> str:
    kernel = tuple(c.attrs["kernel_shape"])
    strides, dilations, pads = _spatial(c, kernel)
    n, ceil = len(kernel), int(c.attrs.get("ceil_mode", 0))
    radius = _centred_window(c)
    # as running maxima: about twice as fast as torch's max pooling on them (not for a graph compiler)
    if radius is not None and c.attrs.get("kernel") != GRAPH:
        return f"onnx_window_max({c.arg(0)}, {lit(radius)})"
    if c.n_out == 1 and c.attrs.get("auto_pad", "NOTSET") == "NOTSET" and pads[:n] != pads[n:]:
        args = f"{lit(kernel)}, {lit(strides)}, {lit(pads)}, {lit(dilations)}, {ceil}"
        return f"onnx_max_pool({c.arg(0)}, {args})"
    x, padding = _pad_input(c, c.arg(0), kernel, "-math.inf")
    call = (
        f"F.max_pool{len(kernel)}d({x}, {lit(kernel)}, {lit(strides)}, {lit(padding)}, {lit(dilations)}, "
        f"ceil_mode={bool(c.attrs.get('ceil_mode', 0))}"
    )
    if c.n_out > 1:
        return call + ", return_indices=True)"
    return call + ")"


def _avgpool(c: Call) -> str:
    kernel = tuple(c.attrs["kernel_shape"])
    strides, _, pads = _spatial(c, kernel)
    n = len(kernel)
    ceil, include = c.attrs.get("ceil_mode", 0), c.attrs.get("count_include_pad", 0)
    if c.attrs.get("auto_pad", "NOTSET") in ("SAME_UPPER", "SAME_LOWER"):
        x, _ = _pad_input(c, c.arg(0), kernel)
        if include:
            return f"F.avg_pool{n}d({x}, {lit(kernel)}, {lit(strides)}, 0, {bool(ceil)}, True)"
        return f"onnx_avg_pool({c.arg(0)}, {lit(kernel)}, {lit(strides)}, {lit(pads)}, {ceil}, {include})"
    if pads[:n] == pads[n:] and all(2 * p <= k for p, k in zip(pads[:n], kernel, strict=True)) and not ceil:
        return (
            f"F.avg_pool{n}d({c.arg(0)}, {lit(kernel)}, {lit(strides)}, {lit(pads[:n])}, False, "
            f"{bool(include)})"
        )
    return f"onnx_avg_pool({c.arg(0)}, {lit(kernel)}, {lit(strides)}, {lit(pads)}, {ceil}, {include})"


def _pool_flops(f: FlopCall) -> float:
    return float(numel(f.outs[0]) * math.prod(f.attrs.get("kernel_shape", (1,))))


register("MaxPool", _maxpool, _pool_flops)
register("AveragePool", _avgpool, _pool_flops)


def _global_avgpool(c: Call) -> str:
    # for a graph compiler, one average pool over the whole map with the window (known statically: set by
    # graph_compiler.for_graph_compiler) and the stride written out, which oneDNN Graph fuses
    if c.attrs.get("kernel") == GRAPH and "window" in c.attrs:
        window = lit(tuple(c.attrs["window"]))
        return f"F.avg_pool2d({c.arg(0)}, {window}, {window})"
    return f"onnx_global_pool({c.arg(0)}, 'avg')"


register("GlobalAveragePool", _global_avgpool, lambda f: float(numel(f.ins[0])))
register("GlobalMaxPool", lambda c: f"onnx_global_pool({c.arg(0)}, 'max')", lambda f: float(numel(f.ins[0])))


def _batchnorm(c: Call) -> str:
    x, s, b, m, v = (c.arg(i) for i in range(5))
    return f"F.batch_norm({x}, {m}, {v}, {s}, {b}, False, 0.0, {lit(c.attrs.get('epsilon', 1e-5))})"


register("BatchNormalization", _batchnorm, per_output_element(2.0))


# ChannelAffine is reflow's own op, made by reflow.onnx.affine_folding from a BatchNorm and the per-channel
# Mul/Add after it: X * W + B with W and B shaped (1, C, 1, ...); ``activation`` "relu" (set by
# reflow.onnx.conv_fusion) applies a ReLU in place. One addcmul pass is ~40% faster than F.batch_norm + relu.
def _channel_affine(c: Call) -> str:
    if c.attrs.get("kernel") == GRAPH:  # (as a BatchNorm of zero mean and unit variance: 4-7% slower)
        affine = f"{c.arg(0)} * {c.arg(1)} + {c.arg(2)}"
        return _graph_activation(affine, c.attrs.get("activation", "none"), ())
    expr = f"torch.addcmul({c.arg(2)}, {c.arg(0)}, {c.arg(1)})"
    return expr + (".relu_()" if c.attrs.get("activation") == "relu" else "")


register("ChannelAffine", _channel_affine, per_output_element(2.0))
register(
    "InstanceNormalization",
    lambda c: (
        f"F.instance_norm({c.arg(0)}, weight={c.arg(1)}, bias={c.arg(2)}, "
        f"eps={lit(c.attrs.get('epsilon', 1e-5))})"
    ),
    per_output_element(5.0),
)
register(
    "LayerNormalization",
    lambda c: (
        f"onnx_layer_norm({c.arg(0)}, {c.arg(1)}, {c.arg(2)}, {c.attrs.get('axis', -1)}, "
        f"{lit(c.attrs.get('epsilon', 1e-5))}, {c.n_out})"
    ),
    per_output_element(6.0),
)
register(
    "LRN",
    lambda c: (
        f"onnx_lrn({c.arg(0)}, {c.attrs['size']}, {lit(c.attrs.get('alpha', 1e-4))}, "
        f"{lit(c.attrs.get('beta', 0.75))}, {lit(c.attrs.get('bias', 1.0))})"
    ),
    lambda f: float(numel(f.outs[0]) * (f.attrs.get("size", 1) + 3)),
)


def _gemm(c: Call) -> str:
    a = f"{c.arg(0)}.t()" if c.attrs.get("transA", 0) else c.arg(0)
    b = f"{c.arg(1)}.t()" if c.attrs.get("transB", 0) else c.arg(1)
    alpha, beta = c.attrs.get("alpha", 1.0), c.attrs.get("beta", 1.0)
    if c.has(2):
        return f"torch.addmm({c.arg(2)}, {a}, {b}, beta={lit(beta)}, alpha={lit(alpha)})"
    return f"{lit(alpha)} * ({a} @ {b})" if alpha != 1.0 else f"{a} @ {b}"


def _matmul_flops(f: FlopCall) -> float:
    a = f.ins[0]
    k = a[-1] if a else 1
    return float(2 * k * numel(f.outs[0]))


register("Gemm", _gemm, _matmul_flops)


# Linear and DotProductAttention are reflow's own ops, made by reflow.onnx.transformer_fusion:
# Linear(X, W, B, Z) is ``activation(F.linear(X, W, B) + Z)`` (Z optional; ``activation`` "none", "relu" or
# "gelu", exact), run on oneDNN by onnx_linear (W is (out, in), transposed at import; kernel GRAPH: F.linear);
# DotProductAttention(Q, K, V) is softmax(Q K^T * scale) V in one F.scaled_dot_product_attention call
# (``k_transposed``: input K is K^T).
def _linear(c: Call) -> str:
    activation = c.attrs.get("activation", "none")
    if c.attrs.get("kernel") == GRAPH:
        expr = f"F.linear({c.arg(0)}, {c.arg(1)}, {c.arg(2)})"
        return _graph_activation(f"{expr} + {c.arg(3)}" if c.has(3) else expr, activation, ())
    extra = f", {c.arg(3)}, {activation!r}" if c.has(3) or activation != "none" else ""
    return f"onnx_linear({c.arg(0)}, {c.arg(1)}, {c.arg(2)}{extra})"


register(
    "Linear",
    _linear,
    _matmul_flops,
    prepack=lambda c, input_shape: (
        None if c.attrs.get("kernel") == GRAPH else f"onnx_pack_linear_weight({c.arg(1)}, {input_shape}, -1)"
    ),
)


def _attention(c: Call) -> str:
    k = f"{c.arg(1)}.transpose(-2, -1)" if c.attrs.get("k_transposed") else c.arg(1)
    return f"F.scaled_dot_product_attention({c.arg(0)}, {k}, {c.arg(2)}, scale={lit(c.attrs['scale'])})"


def _attention_flops(f: FlopCall) -> float:
    q = f.ins[0] or (1,)
    return float(4 * numel(q) * (f.ins[1] or q)[-2])


register("DotProductAttention", _attention, _attention_flops)
register("MatMul", lambda c: f"torch.matmul({c.arg(0)}, {c.arg(1)})", _matmul_flops)
register(
    "Einsum",
    lambda c: f"torch.einsum({c.attrs['equation']!r}, {', '.join(c.args)})",
    lambda f: float(2 * max((numel(s) for s in f.ins), default=1) * max(1, numel(f.outs[0])) ** 0.5),
)


def _softmax(kind: str) -> Any:
    def lower(c: Call) -> str:
        axis = c.attrs.get("axis", 1 if c.opset < 13 else -1)
        if c.opset >= 13 and kind == "soft":
            return f"torch.softmax({c.arg(0)}, dim={axis})"
        if c.opset >= 13 and kind == "log":
            return f"torch.log_softmax({c.arg(0)}, dim={axis})"
        return f"onnx_softmax({c.arg(0)}, {axis}, {c.opset}, {kind!r})"

    return lower


register("Softmax", _softmax("soft"), per_output_element(5.0))
register("LogSoftmax", _softmax("log"), per_output_element(5.0))
register("Hardmax", _softmax("hard"), per_output_element(2.0))


def _dropout(c: Call) -> str:
    # Inference semantics: the identity (and an all-true mask when the mask output is asked for).
    if c.n_out > 1:
        return f"({c.arg(0)}, torch.ones_like({c.arg(0)}, dtype=torch.bool))"
    return c.arg(0)


register("Dropout", _dropout, no_flops)
