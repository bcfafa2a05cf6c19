"""Reductions over axes, and arg-reductions."""

from __future__ import annotations

from collections.abc import Callable

from reflow.onnx.ops import Call, FlopCall, numel, register

# ONNX op -> (onnx_reduce kind, first opset where axes became an input instead of an attribute)
REDUCE: dict[str, tuple[str, int]] = {
    "ReduceSum": ("sum", 13),
    "ReduceMean": ("mean", 18),
    "ReduceMax": ("max", 18),
    "ReduceMin": ("min", 18),
    "ReduceProd": ("prod", 18),
    "ReduceL1": ("l1", 18),
    "ReduceL2": ("l2", 18),
    "ReduceSumSquare": ("sumsquare", 18),
    "ReduceLogSum": ("logsum", 18),
    "ReduceLogSumExp": ("logsumexp", 18),
}


def _reduce_flops(f: FlopCall) -> float:
    return float(numel(f.ins[0]))


def _reducer(kind: str) -> Callable[[Call], str]:
    def lower(c: Call) -> str:
        if "axes" in c.attrs:
            axes = repr(list(c.attrs["axes"]))
        else:
            axes = f"onnx_ints({c.arg(1)})" if c.has(1) else "None"
        return (
            f"onnx_reduce({c.arg(0)}, {axes}, {c.attrs.get('keepdims', 1)}, {kind!r}, "
            f"{c.attrs.get('noop_with_empty_axes', 0)})"
        )

    return lower


for _op, (_kind, _) in REDUCE.items():
    register(_op, _reducer(_kind), _reduce_flops)


def _arg(kind: str) -> Callable[[Call], str]:
    def lower(c: Call) -> str:
        return (
            f"onnx_arg({c.arg(0)}, {c.attrs.get('axis', 0)}, {c.attrs.get('keepdims', 1)}, "
            f"{c.attrs.get('select_last_index', 0)}, {kind!r})"
        )

    return lower


register("ArgMax", _arg("max"), _reduce_flops)
register("ArgMin", _arg("min"), _reduce_flops)
