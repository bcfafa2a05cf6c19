"""ONNX model -> reflow graph, with shapes, constant folding and dead-code elimination.

Policy. Weights and every value computable without the model's inputs are *constants*: they are folded at
import time by running the ops eagerly (the light_* models in the onnx package build all their weights with
ConstantOfShape, so without folding half their nodes would be "work"). Constants are not graph nodes; a node
lists its ONNX input value names in ``attrs["_inputs"]`` and the code generator reads constants from the
weights table. Only values that depend on an input flow along edges, so the graph the clustering passes see
is exactly the model's run-time work. Ports are ``i<k>``/``o<k>`` by ONNX position; edge sizes are bytes
from ONNX shape inference (or from a run, when inference leaves a shape unknown).

When every model input has a static shape, the importer also runs the model once on ones as it goes
(ones, not zeros, which integer division trips over; each value freed after its last reader), so every
value's shape is known exactly, not only where ONNX shape inference could tell; and a ``Shape`` or
``Size`` of a value whose shape cannot change between runs is folded too. An exporter that wrote
``x.reshape(x.shape[0] * heads, seq, -1)`` as ``Shape -> Gather -> Mul -> Concat -> Reshape`` (the
TorchScript exporter, in every attention block) then leaves only the Reshape, with a constant target. A
value's shape is *static* when the shapes of the node's run-time inputs are, and no run-time input gives
a size by its value (a Reshape target computed from data, NonZero, ...).

Node names are the ONNX node names, or ``<OpType>_<index>`` when a node has none, made unique.
"""

from __future__ import annotations

import contextlib
import os
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import onnx
import torch
from onnx import helper, numpy_helper

from reflow.errors import OnnxImportError
from reflow.graph import Graph, Node, Port
from reflow.graph.dce import dead_code_elimination
from reflow.onnx.eager import compile_call, to_numpy, to_torch
from reflow.onnx.ops import rule

# Ops whose output is random or depends on more than their inputs: never folded.
NOT_FOLDABLE = frozenset(
    {"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial", "Bernoulli"}
)
# Ops whose value is their input's shape: constants once that shape is static.
SHAPE_OF_INPUT = frozenset({"Shape", "Size"})
# Ops whose output shape depends on the values of their inputs after the first (a target shape, axes,
# starts, sizes, pads, ...): static only when those inputs are constants.
VALUE_SIZED = frozenset(
    {"Reshape", "Expand", "Tile", "Slice", "Split", "Squeeze", "Unsqueeze", "Pad", "TopK", "OneHot"}
    | {"Resize", "Upsample", "ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1"}
    | {"ReduceL2", "ReduceSumSquare", "ReduceLogSum", "ReduceLogSumExp", "CenterCropPad"}
)
# Ops whose output shape depends on the values of any input: never static when one is a run-time value.
DATA_SIZED = frozenset({"NonZero", "Compress", "Unique", "NonMaxSuppression", "ConstantOfShape", "Range"})


@dataclass(frozen=True)
class ValueInfo:
    """An ONNX value: its name, numpy dtype name and shape (``None`` entries or shape for unknown)."""

    name: str
    dtype: str
    shape: tuple[int | None, ...] | None

    @property
    def nbytes(self) -> float:
        if self.shape is None or any(d is None for d in self.shape):
            return 0.0
        return (
            float(np.prod([d for d in self.shape if d is not None], dtype=np.int64))
            * np.dtype(self.dtype).itemsize
        )


@dataclass
class ImportedModel:
    """A model ready for the passes: the graph of run-time work, its constants, and its signature."""

    name: str
    graph: Graph
    weights: dict[str, np.ndarray[Any, Any]]
    inputs: list[ValueInfo]
    outputs: list[ValueInfo]
    values: dict[str, ValueInfo] = field(default_factory=dict)
    opset: int = 21
    folded: int = 0

    def readers(self) -> defaultdict[str, list[str]]:
        """value -> the nodes that read it, in graph order; a model output is also read by ``output:NAME``."""
        readers: defaultdict[str, list[str]] = defaultdict(list)
        for node in self.graph:
            for v in node.attrs.get("_inputs", ()):
                if v:
                    readers[v].append(node.name)
        for vi in self.outputs:
            readers[vi.name].append(f"output:{vi.name}")
        return readers

    def static_shape(self, value: str) -> tuple[int, ...] | None:
        """``value``'s shape where shape inference fixed every dimension, else None."""
        vi = self.values.get(value)
        if vi is None or vi.shape is None or None in vi.shape:
            return None
        return tuple(int(d) for d in vi.shape if d is not None)


def _value_info(vi: onnx.ValueInfoProto) -> ValueInfo:
    tt = vi.type.tensor_type
    dtype = np.dtype(helper.tensor_dtype_to_np_dtype(tt.elem_type)).name if tt.elem_type else "float32"
    shape = None
    if tt.HasField("shape"):
        shape = tuple(d.dim_value if d.HasField("dim_value") else None for d in tt.shape.dim)
    return ValueInfo(vi.name, dtype, shape)


def _attr_value(a: onnx.AttributeProto) -> Any:
    v = helper.get_attribute_value(a)
    if isinstance(v, bytes):
        return v.decode()
    if isinstance(v, onnx.TensorProto):
        return numpy_helper.to_array(v)
    if isinstance(v, list) and v and isinstance(v[0], bytes):
        return [x.decode() for x in v]
    if isinstance(v, list | tuple):
        return list(v)
    return v


def _constant_value(node: onnx.NodeProto) -> np.ndarray[Any, Any]:
    a = node.attribute[0]
    v = _attr_value(a)
    if a.name == "value_float":
        return np.array(v, dtype=np.float32)
    if a.name == "value_floats":
        return np.array(v, dtype=np.float32)
    if a.name == "value_int":
        return np.array(v, dtype=np.int64)
    if a.name == "value_ints":
        return np.array(v, dtype=np.int64)
    if isinstance(v, np.ndarray):
        return v
    raise OnnxImportError(f"Constant node {node.name!r}: attribute {a.name!r} is not supported")


def load(model: onnx.ModelProto | str | os.PathLike[str]) -> onnx.ModelProto:
    if isinstance(model, onnx.ModelProto):
        return model
    try:
        return onnx.load(os.fspath(model))
    except Exception as e:  # a bad file: say which
        raise OnnxImportError(f"cannot read ONNX model {os.fspath(model)!r}: {e}") from e


def import_model(
    model: onnx.ModelProto | str | os.PathLike[str], *, name: str | None = None, fold: bool = True
) -> ImportedModel:
    """Import an ONNX model (a ModelProto or a file path) into a reflow graph."""
    proto = load(model)
    with contextlib.suppress(Exception):  # best effort; unknown shapes come from the profiling run
        proto = onnx.shape_inference.infer_shapes(proto)
    g_proto = proto.graph
    opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 21)
    name = name or g_proto.name or "model"
    values: dict[str, ValueInfo] = {}
    for vi in [*g_proto.input, *g_proto.value_info, *g_proto.output]:
        values[vi.name] = _value_info(vi)
    consts: dict[str, np.ndarray[Any, Any]] = {i.name: numpy_helper.to_array(i) for i in g_proto.initializer}
    for n, arr in consts.items():
        values[n] = ValueInfo(n, arr.dtype.name, tuple(arr.shape))
    inputs = [_value_info(i) for i in g_proto.input if i.name not in consts]
    outputs = [values.get(o.name, _value_info(o)) for o in g_proto.output]

    g = Graph(name)
    producer: dict[str, tuple[str, str]] = {}
    for vi in inputs:
        node_name = _unique(g, f"input:{vi.name}")
        g.add_node(Node(node_name, "input", (), (Port("out"),), 0.0, {"_value": vi.name}))
        producer[vi.name] = (node_name, "out")

    folded = 0
    tracer = _ShapeTracer.start(inputs, g_proto, values) if fold else None
    for index, n in enumerate(g_proto.node):
        if n.domain not in ("", "ai.onnx"):
            raise OnnxImportError(
                f"node {n.name or index!r} uses domain {n.domain!r}; only the default ONNX "
                "domain is supported"
            )
        if n.op_type == "Constant":
            consts[n.output[0]] = _constant_value(n)
            folded += 1
            continue
        op_rule = rule(n.op_type, n.name or f"{n.op_type}_{index}")
        attrs = {a.name: _attr_value(a) for a in n.attribute}
        ins, outs = list(n.input), list(n.output)
        constant = all(not v or v in consts for v in ins)
        if fold and op_rule.foldable and n.op_type not in NOT_FOLDABLE and constant:
            fn = compile_call(n.op_type, [bool(v) for v in ins], attrs, len(outs), opset, n.name)
            _store(consts, values, outs, fn(*(to_torch(consts[v]) for v in ins if v)))
            folded += 1
            continue
        if tracer is not None and not constant:
            results = tracer.run(index, n, attrs, opset, consts)
            if results is None:  # the op failed on the tracer's made-up values: no more shapes from it
                tracer = None
            elif n.op_type in SHAPE_OF_INPUT and tracer.static.get(ins[0], False):
                _store(consts, values, outs, results)  # the shape of a static value: a constant
                folded += 1
                continue
        node_name = _unique(g, n.name or f"{n.op_type}_{index}")
        in_ports = tuple(Port(f"i{k}") for k, v in enumerate(ins) if v and v not in consts)
        out_ports = tuple(Port(f"o{k}") for k in range(len(outs)))
        attrs.update({"_inputs": ins, "_outputs": outs, "_opset": opset})
        g.add_node(Node(node_name, f"onnx.{n.op_type}", in_ports, out_ports, 1.0, attrs))
        for k, v in enumerate(ins):
            if v and v not in consts:
                if v not in producer:
                    raise OnnxImportError(f"node {node_name!r} reads {v!r}, which nothing produces")
                src, port = producer[v]
                g.connect(src, port, node_name, f"i{k}", values.get(v, ValueInfo(v, "float32", None)).nbytes)
        for k, v in enumerate(outs):
            if v:
                producer[v] = (node_name, f"o{k}")

    for vi in outputs:
        if vi.name not in producer:  # an output that is a constant: emit it through an Identity
            ident = _unique(g, f"Identity_{vi.name}")
            g.add_node(
                Node(
                    ident,
                    "onnx.Identity",
                    (),
                    (Port("o0"),),
                    0.0,
                    {"_inputs": [vi.name], "_outputs": [vi.name], "_opset": opset},
                )
            )
            producer[vi.name] = (ident, "o0")
        out_name = _unique(g, f"output:{vi.name}")
        g.add_node(Node(out_name, "output", (Port("in"),), (), 0.0, {"_value": vi.name}))
        src, port = producer[vi.name]
        g.connect(src, port, out_name, "in", vi.nbytes)

    g = _dead_code_elimination(g)
    used = {v for node in g for v in node.attrs.get("_inputs", ())}
    weights = {k: v for k, v in consts.items() if k in used}
    return ImportedModel(name, g, weights, inputs, outputs, values, opset, folded)


def _store(
    consts: dict[str, np.ndarray[Any, Any]],
    values: dict[str, ValueInfo],
    outs: list[str],
    results: tuple[torch.Tensor, ...],
) -> None:
    for v, t in zip(outs, results, strict=False):
        if v:
            consts[v] = to_numpy(t)
            values[v] = ValueInfo(v, consts[v].dtype.name, tuple(consts[v].shape))


@dataclass
class _ShapeTracer:
    """Runs the model on ones while it is imported: every run-time value's exact shape, and whether that
    shape is static (the same on every run with inputs of these shapes)."""

    live: dict[str, torch.Tensor]
    static: dict[str, bool]
    last_use: dict[str, int]
    values: dict[str, ValueInfo]

    @classmethod
    def start(
        cls, inputs: list[ValueInfo], g: onnx.GraphProto, values: dict[str, ValueInfo]
    ) -> _ShapeTracer | None:
        if any(vi.shape is None or None in vi.shape for vi in inputs):
            return None  # a dynamic dimension: shapes come from a profiling run instead
        live = {
            vi.name: torch.ones(tuple(d or 0 for d in vi.shape or ()), dtype=_dtype(vi.dtype))
            for vi in inputs
        }
        last_use = {v: i for i, n in enumerate(g.node) for v in n.input if v}
        for o in g.output:
            last_use[o.name] = len(g.node)
        return cls(live, {v: True for v in live}, last_use, values)

    def run(
        self,
        index: int,
        n: onnx.NodeProto,
        attrs: Mapping[str, Any],
        opset: int,
        consts: Mapping[str, np.ndarray[Any, Any]],
    ) -> tuple[torch.Tensor, ...] | None:
        """The node's outputs on the traced values; None if the op fails on them (an index out of range
        on made-up data, or a lowering that needs what a later rewrite adds: a Conv's kernel_shape)."""
        ins = list(n.input)
        try:
            fn = compile_call(n.op_type, [bool(v) for v in ins], attrs, len(n.output), opset, n.name)
            args = [to_torch(consts[v]) if v in consts else self.live[v] for v in ins if v]
            with torch.inference_mode():
                results = fn(*args)
        except Exception:
            return None
        dynamic = [v for v in ins if v and v not in consts]
        static = n.op_type not in DATA_SIZED and all(self.static.get(v, False) for v in dynamic)
        if n.op_type in VALUE_SIZED:
            static = static and all(not v or v in consts for v in ins[1:])
        for v, t in zip(n.output, results, strict=False):
            if v:
                self.live[v] = t
                self.static[v] = static
                self.values[v] = ValueInfo(v, str(t.dtype).removeprefix("torch."), tuple(t.shape))
        for v in ins:  # free what no later node reads
            if v in self.live and self.last_use.get(v, -1) <= index:
                del self.live[v]
        return tuple(results)


def _dtype(name: str) -> torch.dtype:
    return getattr(torch, name) if hasattr(torch, name) else torch.float32


def _dead_code_elimination(g: Graph) -> Graph:
    """The shared DCE pass; graph inputs stay even when unused: they are the model's signature."""
    return dead_code_elimination(g, keep=[n.name for n in g if n.op in ("output", "input")])


def _unique(g: Graph, name: str) -> str:
    if name not in g:
        return name
    k = 1
    while f"{name}_{k}" in g:
        k += 1
    return f"{name}_{k}"


def with_value_shapes(
    model: ImportedModel, shapes: Mapping[str, tuple[int, ...]], dtypes: Mapping[str, str]
) -> ImportedModel:
    """A copy whose value table and edge sizes use measured shapes (after a run)."""
    values = dict(model.values)
    for v, s in shapes.items():
        values[v] = ValueInfo(v, dtypes[v], s)
    g = Graph(model.graph.name)
    for n in model.graph:
        g.add_node(n)
    for e in model.graph.edges:
        src = model.graph.node(e.src)
        v = src.attrs["_value"] if src.op == "input" else src.attrs["_outputs"][int(e.src_port[1:])]
        size = values[v].nbytes if v in values else e.size
        g.connect(e.src, e.src_port, e.dst, e.dst_port, size)
    return replace(model, graph=g, values=values)
