"""An ``onnx.backend`` backend that runs models through reflow's generated code.

``prepare`` imports the model, generates the module for a one-cluster plan and executes its source; ``run``
calls the generated serial function. The ONNX conformance node tests (onnx.backend.test) run against it, so
they check the import, the constant folder and the code generator together.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import onnx
import torch
from onnx import numpy_helper
from onnx.backend.base import Backend, BackendRep

from reflow.onnx.codegen import generate
from reflow.onnx.eager import to_numpy, to_torch
from reflow.onnx.importer import ImportedModel, import_model
from reflow.onnx.plan import serial_plan


class ReflowRep(BackendRep):
    """A prepared model: the generated module's namespace and its weights."""

    def __init__(self, model: ImportedModel) -> None:
        self.model = model
        code = generate(model, serial_plan(model.graph))
        self.source = code.source
        self.namespace: dict[str, Any] = {"__name__": f"reflow_generated_{model.name}"}
        exec(compile(code.source, f"<reflow:{model.name}>", "exec"), self.namespace)
        batch = model.inputs[0].shape[0] if model.inputs and model.inputs[0].shape else 1
        weights = {k: to_torch(v) for k, v in code.weights.items()}
        self.weights = self.namespace["prepare_weights"](weights, batch or 1)

    def run(self, inputs: Any, **kwargs: Any) -> tuple[np.ndarray[Any, Any], ...]:
        if isinstance(inputs, dict):
            feeds = {k: to_torch(_array(v)) for k, v in inputs.items()}
        else:
            seq: Sequence[Any] = inputs if isinstance(inputs, list | tuple) else [inputs]
            feeds = {vi.name: to_torch(_array(x)) for vi, x in zip(self.model.inputs, seq, strict=False)}
        with torch.inference_mode():
            out = self.namespace["forward_serial"](self.weights, feeds)
        return tuple(to_numpy(out[vi.name]) for vi in self.model.outputs)


def _array(x: Any) -> np.ndarray[Any, Any]:
    return numpy_helper.to_array(x) if isinstance(x, onnx.TensorProto) else np.asarray(x)


class ReflowBackend(Backend):
    """reflow as an ONNX backend (CPU only)."""

    @classmethod
    def prepare(cls, model: onnx.ModelProto, device: str = "CPU", **kwargs: Any) -> ReflowRep:
        return ReflowRep(import_model(model))

    @classmethod
    def supports_device(cls, device: str) -> bool:
        return device == "CPU"
