"""The whole pipeline in one call: import, cost, plan, generate (what ``reflow parallelize`` runs)."""

from __future__ import annotations

import contextlib
import functools
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path

import onnx

from reflow.onnx.affine_folding import fold_affine_into_conv
from reflow.onnx.codegen import GeneratedCode, generate
from reflow.onnx.conv_fusion import fuse_conv_activations
from reflow.onnx.costmodel import apply_costs, flop_costs, measure_graph, profile, random_inputs
from reflow.onnx.eager import run_graph
from reflow.onnx.graph_compiler import for_graph_compiler, why_not_compilable
from reflow.onnx.importer import ImportedModel, ValueInfo, import_model, with_value_shapes
from reflow.onnx.models import randomize_weights, set_batch
from reflow.onnx.plan import Plan, serial_plan
from reflow.onnx.transformer_fusion import fuse_transformer_ops


@dataclass(frozen=True)
class Result:
    """Everything the pipeline produced, for the summary table and for tests."""

    model: ImportedModel
    plan: Plan
    code: GeneratedCode
    measured_serial: float  # measured whole-graph time of the serial code, 1 thread (seconds)
    measured_plans: dict[str, float] = field(default_factory=dict)  # plan -> seconds per call, where timed
    compilation: str = ""  # whether load() compiles the graph, and why (for the summary)

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
    runtime: str = "threads",
    time_plans: bool | None = None,
    compile: bool = True,
) -> Result:
    """ONNX model -> costed graph -> plan for ``workers`` threads (or worker processes: ``runtime``, what the
    planner charges per cross-cluster wait) -> generated module. Where the plan predicted cheapest is a
    parallel one (clusters or batch slices), its code and the intra-op plan's are timed on ``runtime`` and
    the faster is kept (``time_plans``, default: as ``profile_ops``, the measuring pipeline). ``compile``:
    a model of the ops reflow.onnx.graph_compiler lists, whose whole graph measures faster compiled than
    eager, gets code whose ``load()`` compiles it (one cluster, or each batch slice) into a oneDNN Graph."""
    if seed is not None:
        proto = randomize_weights(proto, seed)
    if batch is not None:
        proto = set_batch(proto, batch)
    base = prepare(proto)
    compiled, compilation = _compile_choice(base, workers, compile)
    model = _costed(_lowered(base, compiled), profile_ops, progress)
    measured = _measure(model, 1, compiled)
    if workers == 1:
        plan = serial_plan(model.graph)
        return Result(model, plan, generate(model, plan, compile=compiled), measured, compilation=compilation)
    from reflow.onnx.planner import batch_slices, plan_options

    b = _batch(model)
    slices = batch_slices(b, workers)
    sliced = None
    if slices > 1:  # the whole graph on batch / slices rows: a model of its own (its shapes are folded)
        sliced = _costed(_lowered(prepare(set_batch(proto, b // slices)), compiled), profile_ops, False)
    slice_cost = sliced.graph.total_cost() if sliced is not None else None
    intra = _measure(model, workers, compiled)
    options = plan_options(
        model.graph,
        workers,
        slice_cost=slice_cost,
        batch=b,
        measured_serial=measured,
        intra_cost=intra,
        runtime=runtime,
    )
    plan = options[0]
    if not ((profile_ops if time_plans is None else time_plans) and is_parallel(plan)):
        return Result(
            model, plan, _code(model, sliced, plan, compile=compiled), measured, compilation=compilation
        )
    intra_plan = next(p for p in options if not is_parallel(p))
    candidates = {describe(p): (p, _code(model, sliced, p, runtime, compiled)) for p in (plan, intra_plan)}
    timed = time_codes({k: code for k, (_, code) in candidates.items()})
    plan, code = candidates[min(timed, key=timed.__getitem__)]
    return Result(model, plan, code.with_runtime("threads"), measured, timed, compilation)  # as written


def is_parallel(plan: Plan) -> bool:
    """Whether ``plan`` runs clusters or batch slices at once (else it is one cluster, the intra-op plan)."""
    return len(plan.clusters) > 1 or plan.batch_slices > 1


def describe(plan: Plan) -> str:
    """A plan in a few words: '2 clusters', '2 batch slices', 'intra-op (2 threads)'."""
    if plan.mode == "batch":
        return f"{plan.batch_slices} batch slices"
    if len(plan.clusters) > 1:
        return f"{len(plan.clusters)} clusters"
    return f"intra-op ({plan.intra_threads} threads)"


def time_codes(codes: dict[str, GeneratedCode], calls: int = 32) -> dict[str, float]:
    """Seconds per call of each generated module, loaded on its own runtime (its RUNTIME constant) and timed
    in its steady state beside the others (reflow.onnx.timing) on random inputs."""
    from reflow.onnx.processes import load_module
    from reflow.onnx.timing import steady_medians

    with tempfile.TemporaryDirectory(prefix="reflow-plans-") as d, contextlib.ExitStack() as stack:
        calls_of = {}
        for i, (name, code) in enumerate(codes.items()):
            py, _ = code.write(Path(d) / f"candidate_{i}.py")
            mod = load_module(py)
            model = stack.enter_context(mod.load())
            x = mod.random_inputs()
            calls_of[name] = functools.partial(model, **x)
        medians, _ = steady_medians(calls_of, calls)
    return medians


def _code(
    model: ImportedModel,
    sliced: ImportedModel | None,
    plan: Plan,
    runtime: str = "threads",
    compile: bool = False,
) -> GeneratedCode:
    """The module that runs ``plan``: in batch mode the slice's graph, run on each slice."""
    runtime = runtime if is_parallel(plan) else "threads"  # one cluster: a worker process would gain nothing
    if plan.mode == "batch" and sliced is not None:
        code_plan = replace(plan, graph=sliced.graph, clusters=serial_plan(sliced.graph).clusters)
        return generate(sliced, code_plan, runtime, compile)
    return generate(model, plan, runtime, compile)


def _measure(model: ImportedModel, threads: int, compiled: bool, repeats: int = 5) -> float:
    """Seconds per whole serial run on ``threads`` torch threads, as the generated code will run it: the
    compiled graph where it is compiled (its op costs are then calibrated to it), else the eager nodes."""
    if not compiled:
        return measure_graph(model, random_inputs(model), threads=threads, repeats=3)
    import torch

    from reflow.onnx.kernels import onnx_torch_threads
    from reflow.onnx.processes import load_module

    with tempfile.TemporaryDirectory(prefix="reflow-measure-") as d, onnx_torch_threads(threads):
        py, pt = generate(model, serial_plan(model.graph), compile=True).write(Path(d) / "measured.py")
        mod = load_module(py)
        batch = _batch(model)
        with torch.inference_mode():
            w = mod.prepare_weights(torch.load(pt, weights_only=True), batch)
            run = functools.partial(mod.compiled_forward(w, batch), w, mod.random_inputs(batch=batch))
            run()
            return float(mod._median_time(run, repeats))  # the module's own timing loop


def _compile_choice(model: ImportedModel, threads: int, wanted: bool) -> tuple[bool, str]:
    """Whether the generated code should compile ``model``'s graph, and a line saying why: where the caller
    wants it, every op is one the graph compiler takes, and the whole graph on ``threads`` torch threads
    measures faster compiled than eager. It did on every torchvision CNN in the benchmarks (1.04-1.64x), and
    lost on two of the light models at batch 4 on 2 threads: densenet121 69 vs 52 ms, and inception_v1,
    whose LRNs it ran 8x slower (onnx_lrn's shifted channel slices), before LRN left GRAPH_OPS."""
    if not wanted:
        return False, "no (--no-compile)"
    if (why := why_not_compilable(model)) is not None:
        return False, f"no: {why}"
    fast, slow = _measure(for_graph_compiler(model), threads, True), _measure(model, threads, False)
    times = f"the whole graph on {threads} thread(s): compiled {fast * 1e3:.3f} ms, eager {slow * 1e3:.3f} ms"
    return (True, f"yes, by oneDNN Graph at load ({times})") if fast < slow else (False, f"no ({times})")


def _lowered(model: ImportedModel, compiled: bool) -> ImportedModel:
    """``model`` as its generated code runs it: lowered for the graph compiler where it is compiled."""
    return for_graph_compiler(model) if compiled else model


def prepare(proto: onnx.ModelProto) -> ImportedModel:
    """Import ``proto`` and make the inference rewrites: the graph the planner and code generator see.

    Where a shape is still unknown after import (a dynamic batch, or a value ONNX shape inference cannot
    follow), one run on random inputs (unknown dimensions 1) tells it first, so that every rewrite that
    needs a shape (a Conv's input rank, say) still applies: the generated code stays shape-generic."""
    model = import_model(proto)
    if any(vi.shape is None or None in vi.shape for vi in _node_values(model)):
        values = run_graph(model, random_inputs(model), keep_all=True)
        shapes = {k: tuple(v.shape) for k, v in values.items()}
        dtypes = {k: str(v.dtype).removeprefix("torch.") for k, v in values.items()}
        model = with_value_shapes(model, shapes, dtypes)
    return inference_rewrites(model)


def _node_values(model: ImportedModel) -> list[ValueInfo]:
    names = {v for n in model.graph for v in n.attrs.get("_inputs", ()) if v and v not in model.weights}
    return [model.values.get(v, ValueInfo(v, "float32", None)) for v in sorted(names)]


def inference_rewrites(model: ImportedModel) -> ImportedModel:
    """The inference rewrites onnxruntime also makes: BatchNorm and per-channel affine ops folded into
    convolutions, then each convolution fused with its residual Add and activation, and the transformer
    patterns (dense layers, GELU, attention) made torch's fused kernels."""
    return fuse_transformer_ops(fuse_conv_activations(fold_affine_into_conv(model)))


def _costed(model: ImportedModel, profile_ops: bool, progress: bool) -> ImportedModel:
    if profile_ops:
        return profile(model, random_inputs(model), progress=progress).model
    return apply_costs(model, flop_costs(model))


def _batch(model: ImportedModel) -> int:
    shape = model.inputs[0].shape if model.inputs else None
    return int(shape[0]) if shape and shape[0] else 1
