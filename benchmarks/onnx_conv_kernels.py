"""Which kernel for a pointwise convolution: oneDNN's fused call, torch's F.conv2d, or one GEMM.

Every 1x1 convolution with stride 1, no padding and one group of the given models (as reflow prepares them:
BatchNorm folded, activation and residual fused) is run three ways on its real shapes, one thread, each
time on the same random channels-last input:

* ``onednn``  ``onnx_conv`` on the prepacked weight (oneDNN's fused post-ops);
* ``aten``    ``F.conv2d``, then the add and activation in place (torch's reference kernel at batch < 16
  on one thread);
* ``linear``  ``onnx_conv1x1``: ``F.linear`` over the (N, H, W, C) view, then the add and activation.

One call of each per round, rounds interleaved, medians; reported per conv (with ``--verbose``) and summed
per model beside reflow's current choice (``conv_fusion._kernel``). It is what ``LINEAR_MAX_OUTPUT`` in
reflow.onnx.conv_fusion was chosen from.

    flock -x /tmp/reflow-cpu.lock .venv/bin/python benchmarks/onnx_conv_kernels.py --batch 1
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Callable

import torch
import torch.nn.functional as F
from onnx_parallel import make_model

from reflow.onnx import conv_fusion
from reflow.onnx.kernels import onnx_activation_, onnx_conv, onnx_conv1x1, onnx_pack_conv_weight
from reflow.onnx.pipeline import prepare

Case = tuple[str, str, dict[str, Callable[[], torch.Tensor]]]


def pointwise_convs(name: str, batch: int) -> list[Case]:
    """(label, reflow's kernel, the three calls) for each pointwise FusedConv of ``name`` at ``batch``."""
    model = prepare(make_model(name, batch))
    gen = torch.Generator().manual_seed(0)
    cases: list[Case] = []
    for node in model.graph:
        if node.op != "onnx.FusedConv":
            continue
        ins = node.attrs["_inputs"]
        w = torch.from_numpy(model.weights[ins[1]].copy())
        if not conv_fusion._pointwise(node, tuple(w.shape)):
            continue
        x_shape = tuple(int(d) for d in model.values[ins[0]].shape or ())
        out_shape = tuple(int(d) for d in model.values[node.attrs["_outputs"][0]].shape or ())
        x = torch.randn(x_shape, generator=gen).contiguous(memory_format=torch.channels_last)
        b = torch.from_numpy(model.weights[ins[2]].copy()) if ins[2] else None
        z = (
            torch.randn(out_shape, generator=gen).contiguous(memory_format=torch.channels_last)
            if ins[3]
            else None
        )
        act, sc = node.attrs["activation"], tuple(node.attrs.get("scalars", ()))
        packed = onnx_pack_conv_weight(w, (0, 0), (1, 1), (1, 1), 1, x_shape)
        flat = w.flatten(1)

        def onednn(x=x, p=packed, b=b, z=z, act=act, sc=sc):  # type: ignore[no-untyped-def]
            return onnx_conv(x, p, b, None if z is None else z.clone(), (1, 1), (0, 0), (1, 1), 1, act, sc)

        def aten(x=x, w=w, b=b, z=z, act=act, sc=sc):  # type: ignore[no-untyped-def]
            y = F.conv2d(x, w, b)
            return onnx_activation_(y if z is None else y.add_(z), act, sc)

        def linear(x=x, w=flat, b=b, z=z, act=act, sc=sc):  # type: ignore[no-untyped-def]
            return onnx_conv1x1(x, w, b, z, act, sc)

        label = f"{x_shape} -> {tuple(w.shape[:2])} {act}{' +z' if z is not None else ''}"
        cases.append((label, node.attrs["kernel"], {"onednn": onednn, "aten": aten, "linear": linear}))
    return cases


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--models", nargs="*", default=["mobilenet_v2", "googlenet", "efficientnet_b0", "squeezenet"]
    )
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--verbose", action="store_true", help="one line per convolution")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    print(f"batch {args.batch}, 1 thread, medians of {args.repeats} interleaved rounds, ms summed per model")
    print(f"{'model':<18}{'convs':>6}{'onednn':>10}{'aten':>10}{'linear':>10}{'reflow':>10}")
    with torch.inference_mode():
        for name in args.models:
            cases = pointwise_convs(name, args.batch)
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
            total = {k: sum(med[(i, k)] for i in range(len(cases))) for k in ("onednn", "aten", "linear")}
            chosen = sum(med[(i, kern)] for i, (_, kern, _) in enumerate(cases))
            print(
                f"{name:<18}{len(cases):>6}"
                + "".join(f"{total[k]:>10.2f}" for k in ("onednn", "aten", "linear"))
                + f"{chosen:>10.2f}"
            )
            if args.verbose:
                for i, (label, kern, _) in enumerate(cases):
                    row = " ".join(f"{k} {med[(i, k)]:.3f}" for k in ("onednn", "aten", "linear"))
                    print(f"    {label:<48} {row}  (reflow: {kern})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
