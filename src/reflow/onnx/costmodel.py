"""Node costs: measured by running each op once (a few times) in PyTorch on the model's real shapes.

Policy. A node's cost is the median time of its compiled lowering, called on the actual intermediate values of
one eager run of the model (so shapes, dtypes and even data-dependent paths are the real ones), with a fixed
number of intra-op threads (1 by default: a cluster's thread). Where profiling is off, the analytic FLOP model
of the op table gives the cost at an assumed machine rate. The sum of node costs ignores the interpreter's and
the cache's effects; :func:`cost_model_error` reports how far it is from the measured whole-graph time.
"""

from __future__ import annotations

import functools
import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, TypeVar

import numpy as np
import torch

from reflow.graph import topo_order
from reflow.onnx.eager import NodeFn, compile_node, load_weights, node_error, run_graph
from reflow.onnx.importer import ImportedModel, with_value_shapes
from reflow.onnx.kernels import onnx_channels_last, onnx_keep_freed_memory, onnx_torch_threads
from reflow.onnx.ops import FlopCall, rule

FLOPS_PER_SECOND = 2e10  # the analytic model's machine rate (one core, fp32, vectorized)
NODE_OVERHEAD = 5e-6  # seconds of Python dispatch per op


def random_inputs(model: ImportedModel, seed: int = 0) -> dict[str, np.ndarray[Any, Any]]:
    """Seeded random inputs matching the model's signature (unknown dimensions become 1)."""
    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray[Any, Any]] = {}
    for vi in model.inputs:
        shape = tuple(d if d is not None else 1 for d in (vi.shape or ()))
        if np.issubdtype(np.dtype(vi.dtype), np.floating):
            out[vi.name] = rng.standard_normal(shape).astype(vi.dtype)
        elif vi.dtype == "bool":
            out[vi.name] = rng.random(shape) < 0.5
        else:
            out[vi.name] = rng.integers(0, 4, shape).astype(vi.dtype)
    return out


def flop_costs(model: ImportedModel, flops_per_second: float = FLOPS_PER_SECOND) -> dict[str, float]:
    """Analytic cost of every compute node: FLOPs / rate + a fixed dispatch overhead."""
    costs: dict[str, float] = {}
    for node in model.graph:
        if not node.op.startswith("onnx."):
            continue
        shapes = tuple(model.static_shape(v) for v in node.attrs["_inputs"])
        outs = tuple(model.static_shape(v) for v in node.attrs["_outputs"])
        attrs = {k: v for k, v in node.attrs.items() if not k.startswith("_")}
        f = rule(node.op.removeprefix("onnx."), node.name).flops(FlopCall(shapes, outs, attrs))
        costs[node.name] = f / flops_per_second + NODE_OVERHEAD
    return costs


@dataclass(frozen=True)
class Profile:
    """Measured node costs (seconds) and the model with measured shapes and those costs applied."""

    costs: dict[str, float]
    model: ImportedModel


T = TypeVar("T")


def with_threads(fn: Callable[[], T], threads: int) -> T:
    """Run ``fn`` with ``threads`` torch intra-op threads, in inference mode, with freed memory kept as the
    generated runtime keeps it (onnx_keep_freed_memory), on the calling thread, as the generated runtime runs
    its first cluster: a thread of its own would bring a second OpenMP team into the process beside the
    caller's, and with more team threads than cores every op wakes its helpers (benchmarks/onnx_threading.py).
    The caller's thread count is restored after."""
    onnx_keep_freed_memory()
    with onnx_torch_threads(threads), torch.inference_mode():
        return fn()


def _median_time(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def profile(
    model: ImportedModel,
    inputs: Mapping[str, Any] | None = None,
    *,
    threads: int = 1,
    repeats: int = 3,
    progress: bool = False,
) -> Profile:
    """Time each node on the real intermediate values of one run, with ``threads`` intra-op threads."""
    inputs = inputs if inputs is not None else random_inputs(model)

    def measure() -> tuple[dict[str, torch.Tensor], dict[str, float]]:
        values = run_graph(model, inputs, keep_all=True)
        names = [n for n in topo_order(model.graph) if model.graph.node(n).op.startswith("onnx.")]
        it: Any = names
        if progress:
            from tqdm import tqdm

            it = tqdm(names, desc=f"profiling {model.name}", unit="op")
        costs: dict[str, float] = {}
        for name in it:
            node = model.graph.node(name)
            fn = compile_node(node)
            args = [values[v] for v in node.attrs["_inputs"] if v]
            fn(*args)  # warm up
            costs[name] = _median_time(functools.partial(fn, *args), repeats)
        return values, costs

    values, costs = with_threads(measure, threads)
    shapes = {k: tuple(v.shape) for k, v in values.items()}
    dtypes = {k: str(v.dtype).removeprefix("torch.") for k, v in values.items()}
    measured = with_value_shapes(model, shapes, dtypes)
    measured.graph = measured.graph.with_costs(costs)
    return Profile(costs, measured)


def apply_costs(model: ImportedModel, costs: Mapping[str, float]) -> ImportedModel:
    """A copy of ``model`` whose graph carries ``costs``."""
    return replace(model, graph=model.graph.with_costs(costs))


def measure_graph(
    model: ImportedModel, inputs: Mapping[str, Any] | None = None, *, threads: int = 1, repeats: int = 5
) -> float:
    """Median time of one whole serial run (compiled nodes in topological order) with ``threads`` threads."""
    whole, _ = _whole_runs(model, inputs, threads, repeats, per_node=False)
    return whole


def in_situ_costs(
    model: ImportedModel, inputs: Mapping[str, Any] | None = None, *, threads: int = 1, repeats: int = 5
) -> dict[str, float]:
    """Each node's median time inside whole serial runs, where its weights and its code come from wherever
    the ops before it left them, as onnxruntime's profiler times its kernels (``profile`` times a node
    called again and again on its own: the same node, in situ, took 1.2-1.5x longer on mobilenet_v2)."""
    _, costs = _whole_runs(model, inputs, threads, repeats, per_node=True)
    return costs


def _whole_runs(
    model: ImportedModel, inputs: Mapping[str, Any] | None, threads: int, repeats: int, per_node: bool
) -> tuple[float, dict[str, float]]:
    """Median whole-run time and, if ``per_node``, each node's median time within the runs."""
    inputs = inputs if inputs is not None else random_inputs(model)
    g = model.graph
    names = [n for n in topo_order(g) if g.node(n).op.startswith("onnx.")]
    steps: list[tuple[NodeFn, list[str], list[str]]] = [
        (compile_node(g.node(n)), g.node(n).attrs["_inputs"], g.node(n).attrs["_outputs"]) for n in names
    ]
    base: dict[str, torch.Tensor] = {}
    node_times: dict[str, list[float]] = {n: [] for n in names}

    def run(record: bool) -> None:
        """One run, naming the node that fails; with ``record``, each node's time appended."""
        values = dict(base)
        for (fn, ins, outs), name in zip(steps, names, strict=True):
            args = [values[i] for i in ins if i]
            t0 = time.perf_counter() if record else 0.0
            try:
                results = fn(*args)
            except Exception as e:
                raise node_error(g.node(name), args, e) from e
            if record:
                node_times[name].append(time.perf_counter() - t0)
            values.update(zip(outs, results, strict=False))

    def timed() -> float:
        base.update(load_weights(model))  # on this thread: see load_weights
        base.update({k: onnx_channels_last(torch.as_tensor(np.asarray(v))) for k, v in inputs.items()})
        run(record=False)  # the first run, untimed
        return _median_time(functools.partial(run, per_node), repeats)

    whole = with_threads(timed, threads)
    return whole, {n: statistics.median(t) for n, t in node_times.items() if t}


def cost_model_error(model: ImportedModel, measured: float) -> float:
    """Relative error of the summed node costs against a measured whole-graph time."""
    predicted = sum(n.cost for n in model.graph if n.op.startswith("onnx."))
    return (predicted - measured) / measured
