"""Parallelize an inception-like ONNX model for 2 threads and check the generated code against onnxruntime.

    .venv/bin/python examples/onnx/parallelize_wide.py

Builds a model with 6 parallel branches per block, runs reflow's pipeline (import, profile, cluster,
generate), writes wide_par.py + wide_par.pt to a temporary folder, imports the generated module and compares
it with onnxruntime. The same from the command line:
`reflow parallelize wide.onnx -o wide_par.py --workers 2`.
"""

from __future__ import annotations

import importlib.util
import tempfile
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from reflow.onnx.costmodel import random_inputs
from reflow.onnx.importer import import_model
from reflow.onnx.models import wide_model
from reflow.onnx.pipeline import parallelize
from reflow.onnx.report import summary_table


def main() -> None:
    proto = wide_model(6, blocks=3, channels=64, size=28)
    result = parallelize(proto, workers=2)
    print(summary_table(result))

    with tempfile.TemporaryDirectory() as d:
        py, _ = result.code.write(Path(d) / "wide_par.py")
        print(f"\nfirst lines of the generated cluster code ({py.name}):")
        print("\n".join(line for line in py.read_text().splitlines() if line.startswith("def cluster_")))
        spec = importlib.util.spec_from_file_location("wide_par", py)
        assert spec and spec.loader
        wide_par = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(wide_par)

        x = random_inputs(import_model(proto), seed=0)
        so = ort.SessionOptions()
        so.log_severity_level = 3
        (ref,) = ort.InferenceSession(proto.SerializeToString(), so).run(None, x)
        with wide_par.load() as model:
            out = model(input=torch.from_numpy(x["input"]))["output"].numpy()
    print(f"\nmax relative difference to onnxruntime: {np.abs(out - ref).max() / np.abs(ref).max():.2e}")


if __name__ == "__main__":
    main()
