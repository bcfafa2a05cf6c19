"""Eager execution of ONNX ops and of imported graphs, through the op table's lowerings.

``compile_node`` turns one node into a Python function by compiling the very expression the code generator
emits, so constant folding, profiling and the conformance backend exercise the generated code's semantics.
``run_graph`` is the reflow-side reference interpreter for an imported model: nodes in topological order, one
call each, every intermediate value kept (the profiler needs them).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from reflow.errors import OnnxImportError
from reflow.graph import Node, topo_order
from reflow.onnx import kernels
from reflow.onnx.ops import Call, rule

NodeFn = Callable[..., tuple[torch.Tensor, ...]]


def namespace() -> dict[str, Any]:
    """The names a lowering may use: torch, F, math and the ``onnx_*`` kernels."""
    ns: dict[str, Any] = {"torch": torch, "F": F, "math": math}
    ns.update({k: v for k, v in vars(kernels).items() if k.startswith("onnx_")})
    return ns


_NS = namespace()


def lower_call(
    op: str, args: Sequence[str], attrs: Mapping[str, Any], n_out: int, opset: int, node: str = "?"
) -> str:
    """The lowering expression of one op application (raises UnsupportedOpError for an unknown op)."""
    return rule(op, node).lower(Call(tuple(args), attrs, n_out, opset))


def compile_call(
    op: str, present: Sequence[bool], attrs: Mapping[str, Any], n_out: int, opset: int, node: str = "?"
) -> NodeFn:
    """A function of the present inputs returning a tuple of ``n_out`` tensors."""
    names = [f"a{i}" for i, p in enumerate(present) if p]
    args = [f"a{i}" if p else "None" for i, p in enumerate(present)]
    expr = lower_call(op, args, attrs, n_out, opset, node)
    body = f"({expr},)" if n_out == 1 else f"tuple({expr})"
    try:
        fn: NodeFn = eval(f"lambda {', '.join(names)}: {body}", dict(_NS))
    except SyntaxError as e:
        raise OnnxImportError(f"lowering of {op} at node {node!r} is not valid Python: {expr!r} ({e})") from e
    return fn


def onnx_attrs(node: Node) -> dict[str, Any]:
    """The ONNX attributes of an imported node (reflow's own bookkeeping keys start with '_')."""
    return {k: v for k, v in node.attrs.items() if not k.startswith("_")}


def compile_node(node: Node) -> NodeFn:
    """Compile an imported ``onnx.*`` node; its present inputs are its ``_inputs`` with a name."""
    ins: list[str] = node.attrs["_inputs"]
    return compile_call(
        node.op.removeprefix("onnx."),
        [bool(v) for v in ins],
        onnx_attrs(node),
        len(node.attrs["_outputs"]),
        node.attrs["_opset"],
        node.name,
    )


def to_torch(a: np.ndarray[Any, Any] | torch.Tensor) -> torch.Tensor:
    if isinstance(a, torch.Tensor):
        return a
    return torch.from_numpy(np.array(a, copy=True))


def to_numpy(t: torch.Tensor) -> np.ndarray[Any, Any]:
    return t.detach().numpy()


def run_graph(model: Any, inputs: Mapping[str, Any], *, keep_all: bool = False) -> dict[str, torch.Tensor]:
    """Run an :class:`~reflow.onnx.importer.ImportedModel` eagerly; returns its outputs by ONNX name (and
    every intermediate value too when ``keep_all``)."""
    # channels-last 4-D tensors, as the generated code uses: profiles then time what the generated code runs
    values = {k: kernels.onnx_channels_last(to_torch(v)) for k, v in model.weights.items()}
    for vi in model.inputs:
        if vi.name not in inputs:
            raise OnnxImportError(f"model {model.name!r} needs input {vi.name!r}; got {sorted(inputs)}")
        values[vi.name] = kernels.onnx_channels_last(to_torch(inputs[vi.name]))
    g = model.graph
    for name in topo_order(g):
        node = g.node(name)
        if not node.op.startswith("onnx."):
            continue
        fn = compile_node(node)
        outs = fn(*(values[v] for v in node.attrs["_inputs"] if v))
        for v, t in zip(node.attrs["_outputs"], outs, strict=False):
            if v:
                values[v] = t
    if keep_all:
        return values
    return {vi.name: values[vi.name] for vi in model.outputs}
