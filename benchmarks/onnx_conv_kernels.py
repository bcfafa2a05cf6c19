"""Which kernel for a pointwise or depthwise convolution, a dense layer or a pool: oneDNN's fused call,
F.conv2d, one GEMM on oneDNN, one GEMM on MKL; torch's max pooling or running maxima, beside onnxruntime.

Every 1x1 convolution with stride 1, no padding and one group (``--kind pointwise``), every depthwise
convolution (one group per input channel, ``--kind depthwise``), or every dense layer (reflow's ``Linear``,
``--kind dense``) of the given models (as reflow prepares them: BatchNorm folded, activation and residual
fused) is run each way on its real shapes, one thread, each time on the same random (channels-last) input:

* ``onednn``  ``onnx_conv`` on the prepacked weight (oneDNN's fused post-ops);
* ``aten``    ``F.conv2d``, then the add and activation in place (for a pointwise conv at batch < 16 on one
  thread torch's reference kernel);
* ``linear``  (pointwise, dense) ``onnx_conv1x1`` / ``onnx_linear``: one GEMM on oneDNN's matrix product
  over the (N, H, W, C) view, the add and activation as post-ops;
* ``mkl``     (pointwise, dense) the same GEMM by ``F.linear`` (torch's BLAS, MKL), then the add and
  activation: the lowering before round 6 of issue 18.

* ``torch``   (pool: every stride-1 MaxPool with a centred odd window, ``--kind pool``) F.max_pool2d, the
  lowering before round 7 of issue 18;
* ``window``  ``onnx_window_max``: running maxima, one spatial dimension after the other;
* ``onnxruntime``  the same pool as a one-node onnxruntime session (one intra-op thread).

One call of each per round, rounds interleaved, medians; reported per kernel (with ``--verbose``) and
summed per model beside reflow's current choice (``conv_fusion._kernel``; ``linear`` for dense layers). It
is what ``LINEAR_MAX_OUTPUT`` and the depthwise rule in reflow.onnx.conv_fusion were chosen from.

    .venv/bin/python benchmarks/onnx_conv_kernels.py --batch 1
    .venv/bin/python benchmarks/onnx_conv_kernels.py --kind depthwise --batch 8
    .venv/bin/python benchmarks/onnx_conv_kernels.py --kind dense --models transformer vit_b_16 --batch 8
    .venv/bin/python benchmarks/onnx_conv_kernels.py --kind pool --models googlenet inception_v3 --batch 8
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import onnxruntime as ort
import torch
import torch.nn.functional as F
from onnx import TensorProto, helper
from onnx_parallel import make_model, ort_session

from reflow.onnx import conv_fusion
from reflow.onnx.eager import lower_call
from reflow.onnx.importer import ImportedModel
from reflow.onnx.kernels import (
    onnx_activation_,
    onnx_conv,
    onnx_conv1x1,
    onnx_linear,
    onnx_pack_conv_weight,
    onnx_window_max,
)
from reflow.onnx.pipeline import prepare

Case = tuple[str, str, dict[str, Callable[[], Any]]]


KERNELS = {
    "pointwise": ("onednn", "aten", "linear", "mkl"),
    "depthwise": ("onednn", "aten"),
    "dense": ("linear", "mkl"),
    "pool": ("torch", "window", "onnxruntime"),
}


def dense_layers(model: ImportedModel, gen: torch.Generator) -> list[Case]:
    """(label, reflow's kernel, the calls) for each Linear node of ``model``."""
    cases: list[Case] = []
    for node in (n for n in model.graph if n.op == "onnx.Linear"):
        ins = node.attrs["_inputs"]
        x = torch.randn(tuple(int(d or 1) for d in model.values[ins[0]].shape or ()), generator=gen)
        w = torch.from_numpy(model.weights[ins[1]].copy())
        b = torch.from_numpy(model.weights[ins[2]].copy()) if len(ins) > 2 and ins[2] else None
        calls: dict[str, Callable[[], torch.Tensor]] = {
            "linear": lambda x=x, w=w, b=b: onnx_linear(x, w, b),
            "mkl": lambda x=x, w=w, b=b: F.linear(x, w, b),
        }
        cases.append((f"{tuple(x.shape)} x {tuple(w.shape)}", "linear", calls))
    return cases


def window_pools(model: ImportedModel, gen: torch.Generator) -> list[Case]:
    """(label, reflow's kernel, the calls) for each stride-1 MaxPool of ``model`` with a centred window."""
    cases: list[Case] = []
    for node in (n for n in model.graph if n.op == "onnx.MaxPool"):
        kernel = tuple(node.attrs["kernel_shape"])
        radius = tuple(k // 2 for k in kernel)
        if len(kernel) != 2 or "onnx_window_max" not in lower_call("MaxPool", ["x"], node.attrs, 1, 17):
            continue
        shape = tuple(int(d or 1) for d in model.values[node.attrs["_inputs"][0]].shape or ())
        x = torch.randn(shape, generator=gen).contiguous(memory_format=torch.channels_last)
        attrs = {"kernel_shape": list(kernel), "pads": list(radius + radius)}
        session, feed = one_node_session("MaxPool", attrs, shape), {"x": x.contiguous().numpy()}
        calls: dict[str, Callable[[], Any]] = {
            "torch": lambda x=x, k=kernel, r=radius: F.max_pool2d(x, k, 1, r),
            "window": lambda x=x, r=radius: onnx_window_max(x, r),
            "onnxruntime": lambda s=session, f=feed: s.run(None, f),
        }
        cases.append((f"MaxPool {kernel} on {shape}", "window", calls))
    return cases


def one_node_session(op: str, attrs: dict[str, Any], shape: tuple[int, ...]) -> ort.InferenceSession:
    """An onnxruntime session (one intra-op thread) of one ``op`` node on a float input of ``shape``."""
    graph = helper.make_graph(
        [helper.make_node(op, ["x"], ["y"], **attrs)],
        op,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
    )
    return ort_session(
        helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), 1, parallel=False
    )


def convs(name: str, batch: int, kind: str) -> list[Case]:
    """(label, reflow's kernel, the calls) for each pointwise (or depthwise) FusedConv of ``name``, or each
    dense layer or centred max pool (``kind``)."""
    model = prepare(make_model(name, batch))
    gen = torch.Generator().manual_seed(0)
    if kind == "dense":
        return dense_layers(model, gen)
    if kind == "pool":
        return window_pools(model, gen)
    cases: list[Case] = []
    for node in model.graph:
        if node.op != "onnx.FusedConv":
            continue
        ins = node.attrs["_inputs"]
        w = torch.from_numpy(model.weights[ins[1]].copy())
        groups = int(node.attrs.get("group", 1))
        if kind == "pointwise" and not conv_fusion._pointwise(node, tuple(w.shape)):
            continue
        if kind == "depthwise" and not (groups > 1 and w.shape[0] == groups and w.shape[1] == 1):
            continue
        strides, pads = tuple(node.attrs.get("strides", (1, 1))), tuple(node.attrs.get("pads", (0,) * 4))[:2]
        dilations = tuple(node.attrs.get("dilations", (1, 1)))
        x_shape = tuple(int(d or 0) for d in model.values[ins[0]].shape or ())
        out_shape = tuple(int(d or 0) for d in model.values[node.attrs["_outputs"][0]].shape or ())
        x = torch.randn(x_shape, generator=gen).contiguous(memory_format=torch.channels_last)
        b = torch.from_numpy(model.weights[ins[2]].copy()) if ins[2] else None
        z = (
            torch.randn(out_shape, generator=gen).contiguous(memory_format=torch.channels_last)
            if ins[3]
            else None
        )
        act, sc = node.attrs["activation"], tuple(node.attrs.get("scalars", ()))
        packed = onnx_pack_conv_weight(w, pads, strides, dilations, groups, x_shape)
        flat = w.flatten(1)
        geometry = (strides, pads, dilations, groups)

        def onednn(x=x, p=packed, b=b, z=z, act=act, sc=sc, g=geometry):  # type: ignore[no-untyped-def]
            return onnx_conv(x, p, b, None if z is None else z.clone(), g[0], g[1], g[2], g[3], act, sc)

        def aten(x=x, w=w, b=b, z=z, act=act, sc=sc, g=geometry):  # type: ignore[no-untyped-def]
            y = F.conv2d(x, w, b, *g)
            return onnx_activation_(y if z is None else y.add_(z), act, sc)

        def linear(x=x, w=flat, b=b, z=z, act=act, sc=sc):  # type: ignore[no-untyped-def]
            return onnx_conv1x1(x, w, b, z, act, sc)  # z is read, not written

        def mkl(x=x, w=flat, b=b, z=z, act=act, sc=sc):  # type: ignore[no-untyped-def]
            y = F.linear(x.permute(0, 2, 3, 1), w, b).permute(0, 3, 1, 2)
            return onnx_activation_(y if z is None else y.add_(z), act, sc)

        label = f"{x_shape} -> {tuple(w.shape)} s{strides[0]} {act}{' +z' if z is not None else ''}"
        calls: dict[str, Callable[[], torch.Tensor]] = {"onednn": onednn, "aten": aten}
        if kind == "pointwise":
            calls.update(linear=linear, mkl=mkl)
        cases.append((label, node.attrs["kernel"], calls))
    return cases


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--models", nargs="*", default=["mobilenet_v2", "googlenet", "efficientnet_b0", "squeezenet"]
    )
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--kind", choices=tuple(KERNELS), default="pointwise")
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--verbose", action="store_true", help="one line per node timed")
    ap.add_argument("--quick", action="store_true", help="the first model, 3 rounds (a smoke run)")
    args = ap.parse_args(argv)
    if args.quick:
        args.models, args.repeats = args.models[:1], 3
    torch.set_num_threads(1)
    kernels = KERNELS[args.kind]
    print(f"{args.kind} kernels, batch {args.batch}, 1 thread, medians of {args.repeats} rounds, ms")
    print(f"{'model':<18}{'nodes':>6}" + "".join(f"{k:>12}" for k in kernels) + f"{'reflow':>10}")
    with torch.inference_mode():
        for name in args.models:
            cases = convs(name, args.batch, args.kind)
            times: dict[tuple[int, str], list[float]] = defaultdict(list)
            for fns in (c[2] for c in cases):
                for fn in fns.values():
                    fn()  # warm up
            for _ in range(args.repeats):
                for i, (_, _, fns) in enumerate(cases):
                    for k, fn in fns.items():
                        t0 = time.perf_counter()
                        fn()
                        times[(i, k)].append(time.perf_counter() - t0)
            med = {key: statistics.median(v) * 1e3 for key, v in times.items()}
            total = {k: sum(med[(i, k)] for i in range(len(cases))) for k in kernels}
            chosen = sum(med[(i, kern)] for i, (_, kern, _) in enumerate(cases))
            print(
                f"{name:<18}{len(cases):>6}"
                + "".join(f"{total[k]:>12.2f}" for k in kernels)
                + f"{chosen:>10.2f}"
            )
            if args.verbose:
                for i, (label, kern, _) in enumerate(cases):
                    row = " ".join(f"{k} {med[(i, k)]:.3f}" for k in kernels)
                    print(f"    {label:<48} {row}  (reflow: {kern})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
