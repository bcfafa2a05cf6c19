"""Export torchvision models (random weights, built in code) to ONNX files for benchmarks/onnx_parallel.py.

Why a separate interpreter: torchvision's wheels need the torch release they were built with (a CUDA build),
and reflow pins torch==2.13.0 (CPU build) in its venv, beside which PyPI's torchvision does not import. So
this script runs in its own throwaway venv (``make onnx-models`` makes /tmp/reflow-export-venv with
torch 2.14.1 and torchvision 0.29.1, and runs it there); it imports only torch, torchvision and onnx, and
writes plain .onnx files into a cache folder. reflow and onnxruntime then read those files under the pinned
torch: no torchvision is ever imported beside reflow.

Every model is built with ``weights=None`` after ``torch.manual_seed(0)`` (nothing is downloaded); BatchNorm
running statistics are seeded random too, so that folding them is exercised, and so is any layer
torchvision initializes to zeros (ViT's head: its output would be all zeros, every check against it vacuous).
Each model is exported with the legacy TorchScript exporter (what most ONNX files in the wild came from),
opset 17, batch 1, with a dynamic batch axis (``reflow parallelize --batch N`` and the benchmark fix it).
The small transformer encoder needs no torchvision: ``reflow.onnx.models.transformer_model`` exports it
under the pinned torch.

    /tmp/reflow-export-venv/bin/python benchmarks/onnx_export_models.py --out ~/.cache/reflow/onnx-models
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import torch

MODELS = (
    "resnet18",
    "googlenet",
    "inception_v3",
    "mobilenet_v2",
    "efficientnet_b0",
    "densenet121",
    "vit_b_16",
)


def build(name: str) -> tuple[torch.nn.Module, tuple[int, ...]]:
    import torchvision

    torch.manual_seed(0)

    kwargs: dict[str, Any] = {"weights": None}
    if name in ("googlenet", "inception_v3"):
        kwargs.update(aux_logits=False, init_weights=True)
    model: torch.nn.Module = getattr(torchvision.models, name)(**kwargs)
    gen = torch.Generator().manual_seed(1)
    for m in model.modules():  # random running statistics, so BatchNorm folding is exercised
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(0.1 * torch.randn(m.num_features, generator=gen))
            m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
        # torchvision zero-initializes some layers (ViT's classification head): a zero output would make
        # every comparison against onnxruntime vacuous, so they get seeded random weights too
        if isinstance(m, torch.nn.Linear) and not m.weight.any():
            torch.nn.init.normal_(m.weight, std=0.02, generator=gen)
            if m.bias is not None:
                torch.nn.init.normal_(m.bias, std=0.02, generator=gen)
    size = 299 if name == "inception_v3" else 224
    return model.eval(), (1, 3, size, size)


def export(name: str, out: Path) -> Path:
    model, shape = build(name)
    path = out / f"{name}.onnx"
    x = torch.randn(shape, generator=torch.Generator().manual_seed(2))
    # grad stays enabled: under no_grad, eval-mode attention takes torch's fused fast path, which has no
    # ONNX export (aten::_native_multi_head_attention)
    torch.onnx.export(
        model,
        (x,),
        str(path),
        dynamo=False,
        opset_version=17,
        input_names=["input"],
        output_names=["output"],
        dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}},
    )
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="folder for the .onnx files")
    ap.add_argument("--models", nargs="*", default=list(MODELS), choices=MODELS)
    args = ap.parse_args(argv)
    out = Path(args.out).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    for name in args.models:
        print(f"exported {export(name, out)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
