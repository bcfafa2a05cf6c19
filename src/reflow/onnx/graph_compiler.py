"""Which models the generated code hands to a graph compiler, and the lowering that compiler reads best.

torch's eager kernels meet each op cold and in torch's own layouts: every convolution call reorders its input
into oneDNN's blocked layout and its output back, and the activation, the pooling and the concat after it are
separate passes, each dispatched from Python. onnxruntime keeps a chain of convolutions in its NCHWc layout
and fuses the ops around them. torch ships the same kind of compiler for CPU inference: TorchScript with
oneDNN Graph (``torch.jit.enable_onednn_fusion``), which takes a frozen graph, fuses each convolution or
dense layer with the elementwise ops, pools and concats around it into oneDNN partitions, and keeps the
blocked layouts between them. The generated module's ``load()`` traces its whole-graph function into such a
graph once (``kernels.onnx_graph_compile``); the module stays plain Python that runs with torch alone, and
falls back to itself where tracing fails or its outputs differ.

Measured (issue 18 round 10, ``benchmarks/onnx_codegen_ab.py``): the compiled graph beat the eager
generated code on every CNN and came level with onnxruntime on several. It is kept to graphs of the ops
below, the convolutional networks it was measured on: on a transformer graph (attention, layer norm, gathers)
oneDNN Graph's TorchScript bridge failed an internal assertion, and those graphs already run torch's fused
attention and dense kernels. LRN is left out too: the light inception_v1's two LRNs (onnx_lrn, shifted
channel slices) made its compiled graph 8x slower than the eager module. Even within GRAPH_OPS the compiled
graph is not always faster (the light densenet121: 69 vs 52 ms), so the pipeline measures both and compiles
only where the compiled graph wins (``pipeline._compiles_faster``).
"""

from __future__ import annotations

from dataclasses import replace

from reflow.onnx.importer import ImportedModel
from reflow.onnx.ops import GRAPH

# ONNX ops (after reflow's rewrites) a compiled graph may hold
GRAPH_OPS = frozenset(
    {
        "onnx.FusedConv",
        "onnx.Conv",
        "onnx.ChannelAffine",
        "onnx.BatchNormalization",
        "onnx.Relu",
        "onnx.Clip",
        "onnx.Sigmoid",
        "onnx.Add",
        "onnx.Mul",
        "onnx.MaxPool",
        "onnx.AveragePool",
        "onnx.GlobalAveragePool",
        "onnx.Concat",
        "onnx.Flatten",
        "onnx.Reshape",
        "onnx.Linear",
        "onnx.Gemm",
        "onnx.Softmax",
        "onnx.Dropout",
        "onnx.Identity",
    }
)
# ops whose rule has a GRAPH kernel: plain, out-of-place torch ops in place of reflow's eager kernels
# (prepacked oneDNN calls, in-place activations, running-max pools), which a tracer would not see through
_GRAPH_KERNELS = frozenset(
    {"onnx.FusedConv", "onnx.Linear", "onnx.MaxPool", "onnx.ChannelAffine", "onnx.GlobalAveragePool"}
)


def compilable(model: ImportedModel) -> bool:
    """Whether ``model`` is one the generated code should compile: float32 in and out, every op in
    GRAPH_OPS."""
    float32 = all(vi.dtype == "float32" for vi in [*model.inputs, *model.outputs])
    ops = {n.op for n in model.graph if n.op.startswith("onnx.")}
    return float32 and bool(ops) and ops <= GRAPH_OPS


def for_graph_compiler(model: ImportedModel) -> ImportedModel:
    """A copy of ``model`` whose convolutions, dense layers, pools and channel affines lower to the GRAPH
    kernel (their weights then stay in torch's layout: the compiler packs them itself)."""
    g = model.graph.copy()
    for node in list(g):
        if node.op in _GRAPH_KERNELS:
            attrs = {**node.attrs, "kernel": GRAPH}
            if node.op == "onnx.GlobalAveragePool" and (
                window := _static_window(model, node.attrs["_inputs"][0])
            ):
                attrs["window"] = window
            g.replace_node(replace(node, attrs=attrs))
    return ImportedModel(
        model.name, g, model.weights, model.inputs, model.outputs, model.values, model.opset, model.folded
    )


def _static_window(model: ImportedModel, value: str) -> tuple[int, int] | None:
    """The 2-D map of ``value`` (N, C, H, W) where shape inference fixed it. oneDNN Graph takes a pool into
    its partitions only where the window is a constant (and the stride is written out): one computed from
    the traced tensor's shape (``aten::size``) leaves the pool to TorchScript, between two partitions
    (efficientnet_b0's 17 squeeze-excitation pools)."""
    info = model.values.get(value)
    shape = info.shape if info is not None else None
    if shape is None or len(shape) != 4 or shape[2] is None or shape[3] is None:
        return None
    return int(shape[2]), int(shape[3])
