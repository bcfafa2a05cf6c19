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


def prepack_line(node: Node, weight: str, input_shape: str) -> str | None:
    """The load-time expression that puts ``node``'s weight (the expression ``weight``) into its kernel's
    layout for an input 0 of shape ``input_shape`` (an expression), or None when its rule has no prepack."""
    r = rule(node.op.removeprefix("onnx."), node.name)
    if r.prepack is None:
        return None
    args = ("None", weight, *node.attrs["_inputs"][2:])
    return r.prepack(Call(args, onnx_attrs(node), 1, node.attrs["_opset"]), input_shape)


def prepacked_weights(model: Any) -> dict[str, Node]:
    """Weight name -> the node whose rule prepacks it: weights read by exactly one node, as its input 1,
    when that node's ``prepack`` rule asks for it and the shape of its input 0 is known."""
    readers: dict[str, list[tuple[Node, int]]] = {}
    for node in model.graph:
        for k, v in enumerate(node.attrs.get("_inputs", ())):
            if v in model.weights:
                readers.setdefault(v, []).append((node, k))
    out: dict[str, Node] = {}
    for v, uses in readers.items():
        node, k = uses[0]
        shape = input_shape(model, node)
        if len(uses) == 1 and k == 1 and shape is not None and prepack_line(node, v, repr(shape)) is not None:
            out[v] = node
    return out


def input_shape(model: Any, node: Node) -> tuple[int, ...] | None:
    """The shape of ``node``'s input 0, when every dimension is known."""
    shape: tuple[int, ...] | None = model.static_shape(node.attrs["_inputs"][0])
    return shape


def load_weights(model: Any) -> dict[str, torch.Tensor]:
    """The model's weights as the generated code holds them after loading: 4-D tensors channels-last, and
    each prepacked weight in its kernel's layout. Call it on the thread that will use them: oneDNN picks a
    packed layout for the calling thread's torch thread count, and another count then runs much slower."""
    weights = {k: kernels.onnx_channels_last(to_torch(v)) for k, v in model.weights.items()}
    for v, node in prepacked_weights(model).items():
        line = prepack_line(node, "a1", repr(input_shape(model, node)))
        weights[v] = eval(f"lambda a1: {line}", dict(_NS))(weights[v])
    return weights


def node_error(node: Node, args: Sequence[torch.Tensor], e: Exception) -> OnnxImportError:
    """The error for ``node`` failing on ``args``: names the node, its op and the input shapes."""
    shapes = [tuple(a.shape) for a in args]
    return OnnxImportError(
        f"node {node.name!r} ({node.op.removeprefix('onnx.')}) fails on inputs of shapes {shapes}: {e}. "
        "If the model was exported for one batch size, a reshape may spell that batch in a target shape: "
        "export it with a dynamic batch axis instead of changing its batch."
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
    # weights as the generated code loads them: profiles then time what the generated code runs
    values: dict[str, torch.Tensor] = load_weights(model)
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
        args = [values[v] for v in node.attrs["_inputs"] if v]
        try:
            outs = fn(*args)
        except Exception as e:  # name the node: a bare torch error says nothing of where it happened
            raise node_error(node, args, e) from e
        for v, t in zip(node.attrs["_outputs"], outs, strict=False):
            if v:
                values[v] = t
    if keep_all:
        return values
    return {vi.name: values[vi.name] for vi in model.outputs}
