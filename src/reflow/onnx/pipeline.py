"""The whole pipeline in one call: import, cost, plan, generate (what ``reflow parallelize`` runs)."""

from __future__ import annotations

from dataclasses import dataclass

import onnx

from reflow.onnx.affine_folding import fold_affine_into_conv
from reflow.onnx.codegen import GeneratedCode, generate
from reflow.onnx.conv_fusion import fuse_conv_activations
from reflow.onnx.costmodel import apply_costs, flop_costs, measure_graph, profile, random_inputs
from reflow.onnx.importer import ImportedModel, import_model
from reflow.onnx.models import randomize_weights, set_batch
from reflow.onnx.plan import Plan, serial_plan


@dataclass(frozen=True)
class Result:
    """Everything the pipeline produced, for the summary table and for tests."""

    model: ImportedModel
    plan: Plan
    code: GeneratedCode
    measured_serial: float  # measured whole-graph time of the serial code, 1 thread (seconds)

    @property
    def cost_model_error(self) -> float:
        """Relative error of the summed node costs against the measured whole-graph time."""
        return (self.plan.serial_cost - self.measured_serial) / self.measured_serial


def parallelize(
    proto: onnx.ModelProto,
    *,
    workers: int,
    batch: int | None = None,
    seed: int | None = None,
    profile_ops: bool = True,
    progress: bool = False,
) -> Result:
    """ONNX model -> costed graph -> plan for ``workers`` threads -> generated module."""
    if seed is not None:
        proto = randomize_weights(proto, seed)
    if batch is not None:
        proto = set_batch(proto, batch)
    model = _costed(inference_rewrites(import_model(proto)), profile_ops, progress)
    measured = measure_graph(model, random_inputs(model), repeats=3)
    if workers == 1:
        plan = serial_plan(model.graph)
    else:
        from reflow.onnx.planner import make_plan

        slice_cost = None
        b = _batch(model)
        if b > 1:
            small = set_batch(proto, -(-b // min(workers, b)))
            sliced = _costed(inference_rewrites(import_model(small)), profile_ops, False)
            slice_cost = sliced.graph.total_cost()
        plan = make_plan(model.graph, workers, slice_cost=slice_cost, batch=b)
    return Result(model, plan, generate(model, plan), measured)


def inference_rewrites(model: ImportedModel) -> ImportedModel:
    """The inference rewrites onnxruntime also makes: BatchNorm and per-channel affine ops folded into
    convolutions, then each convolution fused with its residual Add and Relu."""
    return fuse_conv_activations(fold_affine_into_conv(model))


def _costed(model: ImportedModel, profile_ops: bool, progress: bool) -> ImportedModel:
    if profile_ops:
        return profile(model, random_inputs(model), progress=progress).model
    return apply_costs(model, flop_costs(model))


def _batch(model: ImportedModel) -> int:
    shape = model.inputs[0].shape if model.inputs else None
    return int(shape[0]) if shape and shape[0] else 1
