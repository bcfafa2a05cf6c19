"""Ops that reshape, reorder, combine or create tensors."""

from __future__ import annotations

from typing import Any

import numpy as np

from reflow.onnx.ops import Call, lit, no_flops, register
from reflow.onnx.ops.elementwise import TORCH_DTYPES


def _axes(c: Call, attr: str = "axes", index: int = 1) -> str:
    """Axes given as an attribute (old opsets) or as an optional int64 input (new opsets)."""
    if attr in c.attrs:
        return lit(list(c.attrs[attr]))
    return f"onnx_ints({c.arg(index)})" if c.has(index) else "None"


register(
    "Reshape", lambda c: f"onnx_reshape({c.arg(0)}, {c.arg(1)}, {c.attrs.get('allowzero', 0)})", no_flops
)
register("Flatten", lambda c: f"onnx_flatten({c.arg(0)}, {c.attrs.get('axis', 1)})", no_flops)
register("Squeeze", lambda c: f"onnx_squeeze({c.arg(0)}, {_axes(c)})", no_flops)
register("Unsqueeze", lambda c: f"onnx_unsqueeze({c.arg(0)}, {_axes(c)})", no_flops)


def _transpose(c: Call) -> str:
    if "perm" in c.attrs:
        return f"{c.arg(0)}.permute{lit(tuple(c.attrs['perm']))}"
    return f"{c.arg(0)}.permute(*reversed(range({c.arg(0)}.dim())))"


register("Transpose", _transpose, no_flops)


def _concat(c: Call) -> str:
    # a chain of concats sharing one buffer (set by graph_compiler.concat_chains): the first allocates it,
    # each later one reads the one before it (input 0) and writes only the inputs it adds
    if "chain_channels" in c.attrs:
        return f"onnx_concat_start({c.attrs['chain_channels']}, {', '.join(c.args)})"
    if c.attrs.get("chain_grows"):
        return f"onnx_concat_grow({', '.join(c.args)})"
    return f"torch.cat(({''.join(a + ', ' for a in c.args)}), dim={c.attrs['axis']})"


register("Concat", _concat, no_flops)


def _split(c: Call) -> str:
    axis = c.attrs.get("axis", 0)
    if "split" in c.attrs:
        sizes = lit(list(c.attrs["split"]))
    else:
        sizes = f"onnx_ints({c.arg(1)})" if c.has(1) else "None"
    return f"onnx_split({c.arg(0)}, {sizes}, {axis}, {c.n_out})"


register("Split", _split, no_flops)


def _slice(c: Call) -> str:
    if c.opset < 10:
        starts, ends = lit(list(c.attrs["starts"])), lit(list(c.attrs["ends"]))
        axes = lit(list(c.attrs["axes"])) if "axes" in c.attrs else "None"
        return f"onnx_slice({c.arg(0)}, {starts}, {ends}, {axes}, None)"
    ints = [f"onnx_ints({c.arg(i)})" if c.has(i) else "None" for i in range(1, 5)]
    return f"onnx_slice({c.arg(0)}, {', '.join(ints)})"


register("Slice", _slice, no_flops)


def _gather(c: Call) -> str:
    if "index" in c.attrs:  # one constant index (reflow.onnx.transformer_fusion): a view, no copy
        return f"{c.arg(0)}.select({c.attrs.get('axis', 0)}, {c.attrs['index']})"
    return f"onnx_gather({c.arg(0)}, {c.arg(1)}, {c.attrs.get('axis', 0)})"


register("Gather", _gather, no_flops)


def _shape(c: Call) -> str:
    start, end = c.attrs.get("start", 0), c.attrs.get("end")
    sl = f"[{start}:{'' if end is None else end}]" if (start, end) != (0, None) else ""
    return f"torch.tensor({c.arg(0)}.shape{sl}, dtype=torch.int64)"


register("Shape", _shape, no_flops)
register("Size", lambda c: f"torch.tensor({c.arg(0)}.numel(), dtype=torch.int64)", no_flops)


def _scalar_and_dtype(value: Any) -> tuple[str, str]:
    if value is None:
        return "0.0", "torch.float32"
    arr = np.asarray(value)
    dtype = TORCH_DTYPES[_onnx_type(arr.dtype)]
    return lit(arr.reshape(-1)[0].item()), dtype


def _onnx_type(dtype: np.dtype[Any]) -> int:
    from onnx import helper

    return int(helper.np_dtype_to_tensor_dtype(dtype))


def _constant_of_shape(c: Call) -> str:
    value, dtype = _scalar_and_dtype(c.attrs.get("value"))
    return f"torch.full(onnx_ints({c.arg(0)}), {value}, dtype={dtype})"


register("ConstantOfShape", _constant_of_shape, no_flops)
register("Expand", lambda c: f"onnx_expand({c.arg(0)}, {c.arg(1)})", no_flops)
register("Tile", lambda c: f"{c.arg(0)}.repeat(onnx_ints({c.arg(1)}))", no_flops)


def _pad(c: Call) -> str:
    mode = c.attrs.get("mode", "constant")
    if c.opset < 11:
        pads, value = lit(list(c.attrs["pads"])), lit(c.attrs.get("value", 0.0))
        return f"onnx_pad({c.arg(0)}, {pads}, {value}, {mode!r}, None)"
    value = f"{c.arg(2)}.item()" if c.has(2) else "0.0"
    axes = f"onnx_ints({c.arg(3)})" if c.has(3) else "None"
    return f"onnx_pad({c.arg(0)}, onnx_ints({c.arg(1)}), {value}, {mode!r}, {axes})"


register("Pad", _pad, no_flops)
register("Range", lambda c: f"onnx_range({c.arg(0)}, {c.arg(1)}, {c.arg(2)})", no_flops)
register(
    "CumSum",
    lambda c: (
        f"onnx_cumsum({c.arg(0)}, {c.arg(1)}, {c.attrs.get('exclusive', 0)}, {c.attrs.get('reverse', 0)})"
    ),
)
register(
    "TopK",
    lambda c: (
        f"onnx_topk({c.arg(0)}, {c.arg(1)}, {c.attrs.get('axis', -1)}, {c.attrs.get('largest', 1)}, "
        f"{c.attrs.get('sorted', 1)})"
    ),
)
