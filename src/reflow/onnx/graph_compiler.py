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
graph is not always faster (the light densenet121 was not, 69 vs 52 ms, before its concats shared a buffer),
so the pipeline measures both and compiles only where the compiled graph wins (``pipeline._compile_choice``).
"""

from __future__ import annotations

import itertools
import math
from collections import defaultdict
from dataclasses import replace

from reflow.graph import Graph, Node, Port
from reflow.onnx.conv_fusion import pointwise
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
    return why_not_compilable(model) is None


def why_not_compilable(model: ImportedModel) -> str | None:
    """Why the generated code should not compile ``model`` (for ``reflow parallelize``'s summary), or None
    where it may."""
    ops = {n.op for n in model.graph if n.op.startswith("onnx.")}
    if not ops:
        return "no ONNX ops"
    if missing := sorted(op.removeprefix("onnx.") for op in ops - GRAPH_OPS):
        return f"not in graph_compiler.GRAPH_OPS: {', '.join(missing)}"
    if not all(vi.dtype == "float32" for vi in [*model.inputs, *model.outputs]):
        return "not float32 in and out"
    return None


def for_graph_compiler(model: ImportedModel) -> ImportedModel:
    """A copy of ``model`` whose convolutions, dense layers, pools and channel affines lower to the GRAPH
    kernel (their weights then stay in torch's layout: the compiler packs them itself), with gates folded
    into the convolutions they feed (fold_gates) and the convolutions on one vector per image run as
    matrix-vector products beside the compiler (see vector_convs)."""
    g = model.graph.copy()
    vectors = vector_convs(model)
    readers = model.readers()
    for node in list(g):
        if node.op in _GRAPH_KERNELS:
            attrs = {**node.attrs, "kernel": GRAPH}
            if node.name in vectors:
                attrs["vector"] = True
            if (
                node.op == "onnx.GlobalAveragePool"
                # a pool feeding vector products: a plain mean
                and not set(readers.get(node.attrs["_outputs"][0], ())) <= vectors
                and (window := _static_window(model, node.attrs["_inputs"][0]))
            ):
                attrs["window"] = window
            g.replace_node(replace(node, attrs=attrs))
    compiled = replace(model, graph=g)
    return chain_concats(_absorb_sigmoids(fold_gates(compiled), vectors))


def vector_convs(model: ImportedModel) -> set[str]:
    """The FusedConvs that apply a 1x1 kernel to one image of one pixel (squeeze-excitation's two, at batch
    1): ``W @ x`` for a vector ``x``, which the compiled graph runs as ``torch.addmv`` with its activation
    in place. oneDNN Graph would make each such conv, and the global pool before it, a partition of its own,
    at ~16 us each beside a kernel of 1-3 us (efficientnet_b0 at batch 1, 2 threads: 48 of its 93 partitions;
    ONEDNN_VERBOSE=profile_exec); ``mean``, ``addmv`` and the in-place activations are ops it leaves to
    TorchScript, at a few us each. Not for a gated or residual conv (inputs 3 and 4)."""
    found = set()
    for node in model.graph:
        ins = node.attrs.get("_inputs", ())
        if (
            node.op == "onnx.FusedConv"
            and (shape := model.static_shape(ins[0])) is not None
            and len(shape) == 4
            and shape[0] == 1
            and shape[2:] == (1, 1)
            and pointwise(node, model.weights[ins[1]].shape)
            and not any(ins[3:])
        ):
            found.add(node.name)
    return found


def concat_chains(model: ImportedModel) -> list[list[str]]:
    """Chains of Concats along the channels of 4-D maps in which each one extends the one before it: its
    inputs are that one's followed by more (a dense block as torchvision exports it: layer k concatenates the
    block's input and the k - 1 layers' outputs), or its first input is that one's output (as the light
    densenet121 does it, two at a time). Each member's output is read by ChannelAffines alone (the
    BatchNorm + ReLU before each layer) besides the next member. In a compiled graph a chain shares one
    buffer (chain_concats): each concat copying all its inputs is O(k^2) copies per block, 1.3 ms of
    densenet121's 16.5 ms of kernels at batch 1 on 2 threads, and 62 of its 192 oneDNN Graph partitions
    at ~16 us each (docs/benchmarks.md, issue 18 round 13)."""
    g = model.graph
    found = [
        node
        for node in g
        if node.op == "onnx.Concat"
        and node.attrs.get("axis") in (1, -3)
        and all(v and _is_map(model, v) for v in (*node.attrs["_inputs"], node.attrs["_outputs"][0]))
    ]
    by_inputs = {tuple(n.attrs["_inputs"]): n.name for n in found}
    by_output = {n.attrs["_outputs"][0]: n.name for n in found}
    children: defaultdict[str, list[str]] = defaultdict(list)
    parent: dict[str, str] = {}
    for node in found:
        ins = tuple(node.attrs["_inputs"])
        prev = by_output.get(ins[0]) or next(
            (by_inputs[ins[:j]] for j in range(len(ins) - 1, 0, -1) if ins[:j] in by_inputs), None
        )
        if prev is not None and not _reaches(g, node.name, prev):  # reading prev must not close a cycle
            parent[node.name] = prev
            children[prev].append(node.name)
    readers = model.readers()

    def next_of(name: str) -> str | None:
        """The member after ``name``: its one extension, where only ChannelAffines read ``name`` besides."""
        kids = children.get(name, [])
        others = {
            r
            for r in readers[g.node(name).attrs["_outputs"][0]]
            if r not in g or g.node(r).op != "onnx.ChannelAffine"
        }
        return kids[0] if len(kids) == 1 and others <= {kids[0]} else None

    chains = []
    for node in found:
        name = node.name
        if name in parent and next_of(parent[name]) == name:
            continue  # found from its chain's start
        chain = [name]
        while (nxt := next_of(chain[-1])) is not None:
            chain.append(nxt)
        last_readers = readers[g.node(chain[-1]).attrs["_outputs"][0]]
        if not all(r in g and g.node(r).op == "onnx.ChannelAffine" for r in last_readers):
            chain.pop()  # the last one's readers need a dense tensor: it stays a torch.cat
        if len(chain) > 1:
            chains.append(chain)
    return chains


def chain_concats(model: ImportedModel) -> ImportedModel:
    """A copy of ``model`` in which each chain of concat_chains shares one channels-last buffer: its first
    concat allocates it (attr ``chain_channels``, the last one's channel count), each later one reads the
    concat before it instead of the inputs they share and writes only its own (``chain_grows``), so that
    each value is copied once. The ChannelAffines reading them run as torch ops (one addcmul pass and an
    in-place ReLU) rather than in oneDNN Graph, which ran them on the buffer's strided views with its
    reference kernel (10x slower)."""
    chains = concat_chains(model)
    if not chains:
        return model
    g = model.graph
    readers = model.readers()
    rewired: dict[str, tuple[str, int]] = {}  # concat -> (the one before it, how many inputs that replaces)
    starts: dict[str, int] = {}
    for chain in chains:
        shape = model.static_shape(g.node(chain[-1]).attrs["_outputs"][0])
        assert shape is not None  # concat_chains took only static shapes
        starts[chain[0]] = shape[1]
        for prev, name in itertools.pairwise(chain):
            prev_out = g.node(prev).attrs["_outputs"][0]
            extends_output = g.node(name).attrs["_inputs"][0] == prev_out
            rewired[name] = (prev, 1 if extends_output else len(g.node(prev).attrs["_inputs"]))
    affines = {
        r
        for chain in chains
        for n in chain
        for r in readers[g.node(n).attrs["_outputs"][0]]
        if g.node(r).op == "onnx.ChannelAffine"
    }
    ng = Graph(g.name)
    for node in g:
        if node.name in starts:
            node = replace(node, attrs={**node.attrs, "chain_channels": starts[node.name]})
        elif node.name in rewired:
            prev, shared = rewired[node.name]
            ins = [g.node(prev).attrs["_outputs"][0], *node.attrs["_inputs"][shared:]]
            attrs = {**node.attrs, "_inputs": ins, "chain_grows": True}
            node = replace(node, inputs=tuple(Port(f"i{k}") for k in range(len(ins))), attrs=attrs)
        elif node.name in affines:
            node = replace(node, attrs={k: v for k, v in node.attrs.items() if k != "kernel"})
        ng.add_node(node)
    for name, (prev, _) in rewired.items():
        ng.connect(prev, "o0", name, "i0", model.values[g.node(prev).attrs["_outputs"][0]].nbytes)
    for e in g.edges:
        if e.dst not in rewired:
            ng.connect(e.src, e.src_port, e.dst, e.dst_port, e.size)
        elif (k := int(e.dst_port[1:])) >= (shared := rewired[e.dst][1]):  # an input the concat adds
            ng.connect(e.src, e.src_port, e.dst, f"i{k - shared + 1}", e.size)
    return replace(model, graph=ng)


def _is_map(model: ImportedModel, value: str) -> bool:
    """Whether ``value`` is a float32 4-D tensor of a static shape."""
    vi, shape = model.values.get(value), model.static_shape(value)
    return vi is not None and vi.dtype == "float32" and shape is not None and len(shape) == 4


def _reaches(g: Graph, src: str, dst: str) -> bool:
    """Whether a path leads from node ``src`` to node ``dst`` (reading the earlier concat from a later one
    must not close a cycle)."""
    seen, todo = {src}, [src]
    while todo:
        for s in g.successors(todo.pop()):
            if s == dst:
                return True
            if s not in seen:
                seen.add(s)
                todo.append(s)
    return False


def _absorb_sigmoids(model: ImportedModel, vectors: set[str]) -> ImportedModel:
    """A copy of ``model`` in which each vector conv (vector_convs) without an activation whose output only a
    Sigmoid reads takes that Sigmoid as its activation (squeeze-excitation's gate), applied in place on the
    product: out of place, oneDNN Graph would join the sigmoid and the multiply by the gate into a partition
    of their own."""
    g = model.graph
    readers = model.readers()
    absorbed: dict[str, str] = {}  # sigmoid -> conv
    for name in vectors:
        node = g.node(name)
        out = node.attrs["_outputs"][0]
        sole = readers.get(out, [])
        if (
            node.attrs.get("activation") == "none"
            and len(sole) == 1
            and sole[0] in g
            and g.node(sole[0]).op == "onnx.Sigmoid"
        ):
            absorbed[sole[0]] = name
    if not absorbed:
        return model
    merged = {conv: sig for sig, conv in absorbed.items()}
    ng = Graph(g.name)
    for node in g:
        if node.name in absorbed:
            continue
        if node.name in merged:
            sig = g.node(merged[node.name])
            attrs = {
                **node.attrs,
                "activation": "sigmoid",
                "_outputs": sig.attrs["_outputs"],
                "fused": [*node.attrs.get("fused", []), sig.name],
            }
            node = replace(node, attrs=attrs)
        ng.add_node(node)
    for e in g.edges:
        if e.src in absorbed:  # the sigmoid's readers read the conv
            ng.connect(absorbed[e.src], "o0", e.dst, e.dst_port, e.size)
        elif e.dst not in absorbed:
            ng.connect(e.src, e.src_port, e.dst, e.dst_port, e.size)
    return replace(model, graph=ng)


# A gate is folded where the activation it multiplies has more elements than this many times the weight's,
# plus this many. Per element on 2 threads (efficientnet_b0, batch 1, ONEDNN_VERBOSE=profile_exec) oneDNN
# Graph's broadcast multiply took 0.3-0.5 ns, the weight's per-call reorder into a blocked layout 0.7-1 ns
# and torch's multiply of the weight 0.3 ns, plus ~10 us per call of the two. This folds 5 of its 16 gates
# (the early, large maps); benchmarks/onnx_codegen_ab.py against none: 1.02-1.04x at batch 1 on 2 threads.
GATE_FOLD_RATIO = 3
GATE_FOLD_MARGIN = 20_000


def fold_gates(model: ImportedModel) -> ImportedModel:
    """A copy of ``model`` in which a graph-kernel convolution whose input is ``X * G``, with ``G`` a run-time
    gate of one value per channel of a single image (squeeze-excitation's sigmoid, shape (1, C, 1, 1)),
    reads ``X`` and scales its weight by ``G`` instead: ``conv(X * G, W) == conv(X, W * G)`` per input
    channel. oneDNN Graph runs that multiply as a separate pass over ``X`` (efficientnet_b0 at batch 1: 16
    passes, 0.8 of its 4.1 ms of kernels on 2 threads), where scaling the weight touches
    ``C_out * C * kh * kw`` values instead of ``C * H * W``. Folded only where that is much less (see
    GATE_FOLD_RATIO), the multiply reads nothing else, and the conv has one group."""
    g = model.graph
    producer = {v: node.name for node in g for v in node.attrs.get("_outputs", ()) if v}
    readers = model.readers()
    folded: dict[str, tuple[Node, str]] = {}  # conv -> (the multiply it absorbs, which input is X)
    for node in g:
        ins = node.attrs.get("_inputs", ())
        if (
            node.op != "onnx.FusedConv"
            or node.attrs.get("kernel") != GRAPH
            or node.attrs.get("group", 1) != 1
        ):
            continue
        mul = g.node(producer[ins[0]]) if ins[0] in producer else None
        if mul is None or mul.op != "onnx.Mul" or len(readers.get(ins[0], ())) != 1:
            continue
        x = _gated_input(model, mul, model.weights[ins[1]].size)
        if x is not None:
            folded[node.name] = (mul, x)
    if not folded:
        return model
    absorbed = {mul.name: conv for conv, (mul, _) in folded.items()}
    ng = Graph(g.name)
    for node in g:
        if node.name in absorbed:
            continue
        if node.name in folded:
            mul, x = folded[node.name]
            gate = next(v for v in mul.attrs["_inputs"] if v != x)
            ins = [*node.attrs["_inputs"], "", ""][:4]
            attrs = {**node.attrs, "_inputs": [x, *ins[1:], gate], "fused": [*node.attrs["fused"], mul.name]}
            node = Node(node.name, node.op, (*node.inputs, Port("i4")), node.outputs, node.cost, attrs)
        ng.add_node(node)
    for e in g.edges:
        if e.dst in absorbed:  # X goes to the conv's input 0, the gate to its input 4
            mul, x = folded[absorbed[e.dst]]
            port = "i0" if mul.attrs["_inputs"][int(e.dst_port[1:])] == x else "i4"
            ng.connect(e.src, e.src_port, absorbed[e.dst], port, e.size)
        elif e.src not in absorbed:
            ng.connect(e.src, e.src_port, e.dst, e.dst_port, e.size)
    return replace(model, graph=ng)


def _gated_input(model: ImportedModel, mul: Node, weight_size: int) -> str | None:
    """Which input of ``mul`` is the activation X where the other is a run-time per-channel gate of one image
    and folding pays (see fold_gates), else None."""
    ins: list[str] = list(mul.attrs["_inputs"])
    if len(ins) != 2 or ins[0] == ins[1] or any(v in model.weights for v in ins):
        return None
    for x, gate in (ins, ins[::-1]):
        xs, gs = model.static_shape(x), model.static_shape(gate)
        if xs is None or len(xs) != 4 or xs[0] != 1 or gs != (1, xs[1], 1, 1):
            continue
        if math.prod(xs) > GATE_FOLD_RATIO * weight_size + GATE_FOLD_MARGIN:
            return x
    return None


def _static_window(model: ImportedModel, value: str) -> tuple[int, int] | None:
    """The 2-D map of ``value`` (N, C, H, W) where shape inference fixed it. oneDNN Graph takes a pool into
    its partitions only where the window is a constant (and the stride is written out): one computed from
    the traced tensor's shape (``aten::size``) leaves the pool to TorchScript, between two partitions
    (efficientnet_b0's 17 squeeze-excitation pools)."""
    shape = model.static_shape(value)
    return (shape[2], shape[3]) if shape is not None and len(shape) == 4 else None
