"""All nine light_* models (seeded random weights) agree with onnxruntime, serial and parallel code."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from onnx_oracle import exec_generated, ort_run, rel_err

from reflow.onnx import import_model
from reflow.onnx.codegen import generate
from reflow.onnx.costmodel import apply_costs, flop_costs, random_inputs
from reflow.onnx.models import LIGHT_MODELS, light_model
from reflow.onnx.pipeline import inference_rewrites
from reflow.onnx.plan import serial_plan
from reflow.onnx.planner import make_plan


@pytest.mark.parametrize("name", LIGHT_MODELS)
def test_light_model_matches_onnxruntime(name: str) -> None:
    proto = light_model(name, seed=1)
    plain = import_model(proto)
    model = inference_rewrites(plain)
    if any(n.op == "onnx.BatchNormalization" for n in plain.graph):
        assert len(model.graph) < len(plain.graph), "no BatchNorm was folded into its Conv"
    if any(n.op == "onnx.Conv" for n in plain.graph):
        assert any(n.op == "onnx.FusedConv" for n in model.graph), "no Conv became a FusedConv"
    model = apply_costs(model, flop_costs(model))
    x = random_inputs(model, seed=2)
    ref = ort_run(proto, x)
    assert not any(n.op == "onnx.ConstantOfShape" for n in model.graph), "weights were not folded"
    weights = {k: torch.from_numpy(np.array(v)) for k, v in model.weights.items()}
    feeds = {k: torch.from_numpy(v) for k, v in x.items()}
    plans = [serial_plan(model.graph)]
    plans.append(make_plan(model.graph, 2))
    for plan in plans:
        ns = exec_generated(generate(model, plan).source, name)
        with ns["ParallelModel"](weights) as par:
            outs = par.serial(**feeds) if plan is plans[0] else par(**feeds)
        for r, vi in zip(ref, model.outputs, strict=True):
            assert rel_err(r, outs[vi.name].numpy()) < 1e-4, (
                f"{name} ({plan.mode}, {len(plan.clusters)} clusters)"
            )
