"""Plan -> a readable, self-contained Python module of parallel PyTorch code.

Policy. The generated file is for people as much as for machines. It holds, top to bottom: a docstring with
the plan's numbers, the model's signature, the ``onnx_*`` helpers it uses (copied from reflow.onnx.kernels),
one function per cluster named after the ops it holds (a comment gives each node's predicted cost), the serial
function (every node in topological order, the reference), and a small runtime: the caller's thread runs the
first cluster and persistent worker threads the others, each worker with a fixed number of torch intra-op
threads (the caller's own count is set for the call and restored), all started together on each call, so
that the model adds no idle OpenMP team to the process (see ParallelModel). A value crossing clusters is
published in a shared dict and announced by a ``threading.Event``; its consumer waits on the event right
before its first use. torch ops release the GIL, so clusters overlap on a multicore CPU. If a cluster fails,
every event is set so no thread waits forever, and the first error is raised in the caller. Weights live in a
sidecar ``.pt`` file (torch.save of a dict of tensors) next to the module; the module needs only torch.
Its ``RUNTIME`` constant may instead name "processes": ``load()`` then hands the same cluster functions to
reflow.onnx.processes, which runs each in a worker process over shared memory (no GIL between clusters).
"""

from __future__ import annotations

import inspect
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from reflow.graph import Graph, topo_order
from reflow.onnx import kernels
from reflow.onnx.eager import input_shape, lower_call, onnx_attrs, prepack_line, prepacked_weights
from reflow.onnx.importer import ImportedModel
from reflow.onnx.plan import Plan

RUNTIMES = ("threads", "processes")  # what a generated module's load() can run its clusters on


@dataclass(frozen=True)
class GeneratedCode:
    """The module's source and the weights its sidecar file holds."""

    source: str
    weights: dict[str, np.ndarray[Any, Any]]

    def with_runtime(self, runtime: str) -> GeneratedCode:
        """The same module with ``runtime`` ("threads" or "processes") as what its ``load()`` runs."""
        if runtime not in RUNTIMES:
            raise ValueError(f"runtime must be one of {RUNTIMES}, got {runtime!r}")
        source = re.sub(r'^RUNTIME = "\w+"', f'RUNTIME = "{runtime}"', self.source, count=1, flags=re.M)
        return GeneratedCode(source, self.weights)

    def write(self, path: str | Path) -> tuple[Path, Path]:
        """Write ``path`` (the module) and ``path`` with suffix .pt (the weights), making its folder if
        needed; returns both paths."""
        import torch

        py = Path(path)
        pt = py.with_suffix(".pt")
        py.parent.mkdir(parents=True, exist_ok=True)
        py.write_text(self.source)
        torch.save({k: torch.from_numpy(np.array(v, copy=True)) for k, v in self.weights.items()}, pt)
        return py, pt


class _Names:
    """Python identifiers for ONNX value names: deterministic, unique, recognisable."""

    def __init__(self) -> None:
        self._map: dict[str, str] = {}
        self._used: set[str] = set()

    def __call__(self, value: str) -> str:
        if value not in self._map:
            base = "v_" + (re.sub(r"\W", "_", value).strip("_") or "x")
            name, k = base, 1
            while name in self._used:
                name, k = f"{base}_{k}", k + 1
            self._used.add(name)
            self._map[value] = name
        return self._map[value]


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.3f} ms"


def _node_line(g: Graph, name: str, var: _Names, weights: dict[str, Any], ref: str) -> str:
    node = g.node(name)
    ins: list[str] = node.attrs["_inputs"]
    outs: list[str] = node.attrs["_outputs"]
    args = [("None" if not v else f'{ref}["{v}"]' if v in weights else var(v)) for v in ins]
    expr = lower_call(
        node.op.removeprefix("onnx."), args, onnx_attrs(node), len(outs), node.attrs["_opset"], name
    )
    targets = ", ".join(var(v) if v else "_" for v in outs)
    label = node.attrs.get("clone_of", name)
    absorbed = node.attrs.get("fused") or node.attrs.get("folded")  # ONNX nodes a rewrite merged into it
    if absorbed:
        label += f" (+{','.join(absorbed)})"
    return f"{targets} = {expr}  # {label}: {node.op.removeprefix('onnx.')}, {_ms(node.cost)}"


def _node_vars(g: Graph, name: str, var: _Names, weights: dict[str, Any]) -> set[str]:
    """The local variables a node's line reads or writes."""
    node = g.node(name)
    return {var(v) for v in [*node.attrs["_inputs"], *node.attrs["_outputs"]] if v and v not in weights}


def _freeing_dead_values(lines: list[tuple[str, set[str]]]) -> list[str]:
    """The lines, each followed by a ``del`` of the locals it used last: a freed intermediate's memory,
    still in cache, serves the next op (resnet50 on one thread: 92 -> 80 ms when measured)."""
    last = {v: i for i, (_, names) in enumerate(lines) for v in names}
    out: list[str] = []
    for i, (text, names) in enumerate(lines):
        out.append(text)
        dead = sorted(v for v in names if last[v] == i)
        if dead and not text.lstrip().startswith("return "):
            out.append(text[: len(text) - len(text.lstrip())] + f"del {', '.join(dead)}")
    return out


def _prepare_weights(model: ImportedModel) -> list[str]:
    """``prepare_weights``: the load-time layout of every weight (channels-last, prepacked conv and dense
    weights)."""
    lines = [
        "def prepare_weights(w, batch):",
        '    """The weights in the layouts the kernels want, made once at load for ``batch`` rows of input:',
        "    4-D tensors channels-last, conv and dense weights in oneDNN's blocked layouts. oneDNN picks",
        "    those layouts for the calling thread's torch thread count: call it on the thread that runs",
        '    them."""',
        "    w = {k: onnx_channels_last(t) for k, t in w.items()}",
    ]
    built_for = next((vi.shape[0] for vi in model.inputs if vi.shape), None)
    for v, node in sorted(prepacked_weights(model).items()):
        shape = input_shape(model, node) or ()
        line = prepack_line(node, f'w["{v}"]', _batch_scaled(shape, built_for))
        lines.append(f'    w["{v}"] = {line}  # {node.name}')
    return [*lines, "    return w"]


def _batch_scaled(shape: tuple[int, ...], built_for: int | None) -> str:
    """``shape`` (a value's, in a graph built for a batch of ``built_for``) as an expression over ``batch``:
    its first dimension scaled by ``batch / built_for``. That dimension is the batch itself in a CNN, and
    in a sequence-first transformer the sequence ((197, 1, 768) at batch 1): scaled, it keeps the number of
    rows right, which is what a dense weight's packing depends on."""
    if not shape or not isinstance(built_for, int) or built_for <= 0:
        return repr(tuple(shape))
    first = "batch" if shape[0] == built_for else f"{shape[0]} * batch // {built_for}"
    return "(" + ", ".join([first, *map(str, shape[1:])]) + ")"


def _helpers_used(code: str) -> list[str]:
    """Sources of the onnx_* kernels ``code`` calls, with their own dependencies, in kernels-module order."""
    available = {k: v for k, v in vars(kernels).items() if k.startswith("onnx_")}
    wanted: set[str] = set()
    frontier = set(re.findall(r"\b(onnx_\w+)\(", code))
    while frontier:
        name = frontier.pop()
        if name in wanted or name not in available:
            continue
        wanted.add(name)
        frontier |= set(re.findall(r"\b(onnx_\w+)\(", inspect.getsource(available[name])))
    return [inspect.getsource(f) for k, f in available.items() if k in wanted]


def _cluster_name(g: Graph, index: int, cluster: tuple[str, ...]) -> str:
    ops = Counter(g.node(n).op.removeprefix("onnx.").lower() for n in cluster)
    top = [op for op, _ in sorted(ops.items(), key=lambda kv: (-kv[1], kv[0]))[:3]]
    return f"cluster_{index}_" + "_".join(top)


def generate(
    model: ImportedModel, plan: Plan, runtime: str = "threads", compile: bool = False
) -> GeneratedCode:
    """The parallel module for ``model`` under ``plan`` (in batch mode, ``model`` is one slice's graph);
    ``runtime``: what its ``load()`` runs on by default, "threads" or "processes" (reflow.onnx.processes);
    ``compile``: whether its ``load()`` compiles the whole-graph function (reflow.onnx.graph_compiler)."""
    if runtime not in RUNTIMES:
        raise ValueError(f"runtime must be one of {RUNTIMES}, got {runtime!r}")
    g = plan.graph
    order = {n: i for i, n in enumerate(topo_order(g))}

    def position(n: str) -> int:
        # a clone runs where its original would: before every consumer of the value, whatever its edges say
        return order.get(g.node(n).attrs.get("clone_of", n), order[n])

    compute = [
        tuple(sorted((n for n in c if g.node(n).op.startswith("onnx.")), key=position)) for c in plan.clusters
    ]
    compute = [c for c in compute if c]
    var = _Names()
    weights = model.weights
    home: dict[str, int] = {}  # value -> the cluster that publishes it (the original, not a clone)
    for ci, cluster in enumerate(compute):
        for n in cluster:
            node = g.node(n)
            for v in node.attrs["_outputs"]:
                if v and "clone_of" in node.attrs:
                    home.setdefault(v, ci)
                elif v:
                    home[v] = ci
    input_names = [vi.name for vi in model.inputs]
    output_names = [vi.name for vi in model.outputs]

    # which values each cluster reads from other clusters, and which it publishes
    needs: list[list[str]] = []
    for cluster in compute:
        local = {v for n in cluster for v in g.node(n).attrs["_outputs"] if v}
        reads: list[str] = []
        for n in cluster:
            for v in g.node(n).attrs["_inputs"]:
                if v and v not in weights and v not in local and v not in reads:
                    reads.append(v)
        needs.append(reads)
    cross = sorted({v for reads in needs for v in reads if v not in input_names}, key=lambda v: (home[v], v))
    publish = [
        sorted({v for v in [*cross, *output_names] if home.get(v) == ci}) for ci in range(len(compute))
    ]

    body: list[str] = []
    names = [_cluster_name(g, i, c) for i, c in enumerate(compute)]
    for ci, cluster in enumerate(compute):
        cost = sum(g.node(n).cost for n in cluster)
        ops = Counter(g.node(n).op.removeprefix("onnx.") for n in cluster)
        summary = ", ".join(f"{op} x{k}" for op, k in sorted(ops.items(), key=lambda kv: (-kv[1], kv[0])))
        body.append(f"def {names[ci]}(w, v, ev):")
        body.append(f'    """Cluster {ci}: {len(cluster)} nodes ({summary}); predicted cost {_ms(cost)}."""')
        fetched: set[str] = set()
        done: set[str] = set()
        lines: list[tuple[str, set[str]]] = []
        for n in cluster:
            for v in g.node(n).attrs["_inputs"]:  # wait for a remote value right before its first use
                if v in needs[ci] and v not in fetched:
                    fetched.add(v)
                    if v in input_names:
                        lines.append((f'    {var(v)} = onnx_channels_last(v["{v}"])', {var(v)}))
                    else:
                        wait = f'    {var(v)} = _wait(v, ev, "{v}")  # from cluster {home[v]}'
                        lines.append((wait, {var(v)}))
            lines.append(("    " + _node_line(g, n, var, weights, "w"), _node_vars(g, n, var, weights)))
            for v in g.node(n).attrs["_outputs"]:
                if v in publish[ci] and v not in done:
                    done.add(v)
                    if v in cross:
                        lines.append((f'    _publish(v, ev, "{v}", {var(v)})', {var(v)}))
                    else:
                        lines.append((f'    v["{v}"] = {var(v)}', {var(v)}))
        body += _freeing_dead_values(lines)
        body.append("")
        body.append("")

    serial: list[str] = [
        "def forward_serial(w, inputs):",
        '    """Every node in topological order on the calling thread: the reference."""',
    ]
    lines = [(f'    {var(v)} = onnx_channels_last(inputs["{v}"])', {var(v)}) for v in input_names]
    sg = model.graph
    for n in topo_order(sg):
        if sg.node(n).op.startswith("onnx."):
            lines.append(("    " + _node_line(sg, n, var, weights, "w"), _node_vars(sg, n, var, weights)))
    returned = f"    return {{{', '.join(f'{v!r}: {var(v)}' for v in output_names)}}}"
    lines.append((returned, {var(v) for v in output_names}))
    serial += _freeing_dead_values(lines)
    serial += ["", "", *_prepare_weights(model)]

    code_so_far = "\n".join([*body, *serial, _RUNTIME])  # the runtime's own helpers too
    helpers = _helpers_used(code_so_far)
    signature = {vi.name: (_full_shape(vi.shape, plan), _torch_dtype(vi.dtype)) for vi in model.inputs}
    sig_lines = ", ".join(f'"{k}": ({s!r}, {d})' for k, (s, d) in signature.items())
    header = _HEADER.format(
        name=model.name,
        nodes=plan.compute_nodes,
        clusters=len(compute),
        workers=plan.workers,
        mode=plan.mode,
        serial=_ms(plan.serial_cost),
        makespan=_ms(plan.makespan),
        speedup=plan.predicted_speedup,
        bound=plan.bound,
        cp=_ms(plan.critical_path),
    )
    parts = [
        header,
        f"WORKERS = {plan.workers}",
        f"INTRA_OP_THREADS = {plan.intra_threads}  # torch threads per cluster",
        f"SERIAL_THREADS = {plan.workers}  # torch threads for the serial reference",
        f'MODE = "{plan.mode}"  # "clusters": inter-op parallel; "batch": batch slices in parallel',
        f"BATCH_SLICES = {plan.batch_slices}",
        f'RUNTIME = "{runtime}"  # "threads"; "processes": the clusters in worker processes (needs reflow)',
        f"COMPILE = {compile}  # load() traces forward_serial into a oneDNN Graph (see compiled_forward)",
        f"INPUTS = {{{sig_lines}}}",
        f"OUTPUTS = {tuple(output_names)!r}",
        f"CROSS_VALUES = {tuple(cross)!r}  # values that cross clusters, each with an event",
        "",
        "",
        "# --- ONNX semantics helpers (copied from reflow.onnx.kernels) " + "-" * 40,
        *[h + "\n" for h in helpers],
        "# --- runtime: publishing and waiting for cross-cluster values " + "-" * 40,
        _RUNTIME_HELPERS,
        "# --- the clusters " + "-" * 90,
        *body,
        *serial,
        "",
        "",
        f"CLUSTERS = ({''.join(n + ', ' for n in names)})",
        _RUNTIME,
    ]
    return GeneratedCode("\n".join(parts), dict(weights))


def _full_shape(shape: tuple[int | None, ...] | None, plan: Plan) -> tuple[int, ...]:
    """An input's shape as the caller passes it (unknown dimensions 1): in batch mode ``model`` is the graph
    of one slice, and the caller passes all slices at once."""
    dims = tuple(d if d is not None else 1 for d in (shape or ()))
    return (dims[0] * plan.batch_slices, *dims[1:]) if plan.mode == "batch" and dims else dims


def _torch_dtype(np_name: str) -> str:
    return {
        "float32": "torch.float32",
        "float64": "torch.float64",
        "float16": "torch.float16",
        "int64": "torch.int64",
        "int32": "torch.int32",
        "int8": "torch.int8",
        "uint8": "torch.uint8",
        "bool": "torch.bool",
        "int16": "torch.int16",
    }.get(np_name, "torch.float32")


_HEADER = '''"""{name}: parallel PyTorch code generated by reflow (`reflow parallelize`).

{nodes} nodes in {clusters} clusters for {workers} workers, mode "{mode}".
Predicted: serial {serial}, parallel {makespan}, speedup {speedup:.2f}x
(work / critical-path bound {bound:.2f}x, critical path {cp}).

Use it:
    from <this module> import load
    model = load()                  # reads the weights from the .pt file next to this one
    outputs = model(**inputs)       # dict of torch tensors by ONNX output name
    model.close()                   # or use `with load() as model:`
Run it (`python <this file>`) to check the parallel code against the serial code and time both.
Needs only torch.
"""

from __future__ import annotations

import contextlib
import math
import queue
import sys
import threading
import time
from pathlib import Path

import torch
import torch.nn.functional as F
'''

_RUNTIME_HELPERS = '''class _Aborted(Exception):
    """Another cluster failed; this one stops waiting."""


def _publish(v, ev, name, value):
    v[name] = value
    ev[name].set()


def _wait(v, ev, name):
    ev[name].wait()
    if name not in v:
        raise _Aborted(name)
    return v[name]

'''

_RUNTIME = '''

class _Worker:
    """A persistent thread with a fixed number of torch intra-op threads, pinned at its start."""

    def __init__(self, threads, name):
        self.jobs = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._loop, args=(threads,), daemon=True, name=name)
        self.thread.start()

    def _loop(self, threads):
        _pin_torch_threads(threads)
        while True:
            job = self.jobs.get()
            if job is None:
                return
            fn, args, state = job
            try:
                _run_job(fn, args, state)
            finally:
                state["done"].release()

    def close(self):
        self.jobs.put(None)
        self.thread.join()


def _pin_torch_threads(n):
    """Give this thread ``n`` torch intra-op threads for good. torch sets a thread's count at its first
    parallel op to the count last set on any thread, overriding one set on it before; so that first
    initialisation is made now, before the count is set."""
    torch.get_num_threads()
    torch.set_num_threads(n)


def _run_job(fn, args, state):
    try:
        with torch.inference_mode():
            fn(*args)
    except BaseException as e:  # wake every waiter so no cluster blocks forever
        if not isinstance(e, _Aborted):
            state["errors"].append(e)
        for event in state["ev"].values():
            event.set()


def compiled_forward(w, batch):
    """forward_serial for inputs of ``batch`` rows, traced into one TorchScript graph that oneDNN Graph runs
    (onnx_graph_compile) where COMPILE says so, else forward_serial itself. Call it on the thread, and with
    the torch thread count, that will run it."""
    if not COMPILE:
        return forward_serial
    with torch.inference_mode():
        return onnx_graph_compile(forward_serial, w, random_inputs(batch=batch))


def _run_all(workers, calls, events):
    """Run ``calls`` [(fn, args)] concurrently: the first on the calling thread, each other one on a worker
    of its own; raise the first error after all finish."""
    assert len(calls) <= len(workers) + 1, "more concurrent calls than threads"
    state = {"errors": [], "ev": events, "done": threading.Semaphore(0)}
    for worker, (fn, args) in zip(workers, calls[1:]):
        worker.jobs.put((fn, args, state))
    with onnx_torch_threads(INTRA_OP_THREADS):
        _run_job(*calls[0], state)
    for _ in calls[1:]:
        state["done"].acquire()
    if state["errors"]:
        raise state["errors"][0]


class ParallelModel:
    """Runs the first cluster (or batch slice) on the caller's thread and each other one on a persistent
    worker thread. The caller's thread, not a worker, runs the first so that the process holds no idle
    OpenMP team: each thread that runs torch ops on several threads owns one, and once the teams hold more
    threads than there are cores, libgomp stops spinning between parallel regions and every op has to wake
    its helper threads (mobilenet_v2, batch 1, on 2 threads: 4.4 ms, 10 ms after one torch op of the
    caller's own on 2 threads had made a second team)."""

    def __init__(self, weights, keep_memory=True):
        if keep_memory:
            onnx_keep_freed_memory()
        n = BATCH_SLICES if MODE == "batch" else len(CLUSTERS)
        torch.get_num_threads()  # fixes the caller's count before the workers set theirs (_pin_torch_threads)
        self._workers = [_Worker(INTRA_OP_THREADS, f"reflow-cluster-{i}") for i in range(1, n)]
        self._threads = [w.thread for w in self._workers]
        # weights are packed with the torch thread count that will use them (see prepare_weights); in batch
        # mode the code is the graph of one slice, and the serial reference runs the slices in turn
        full = next((shape[0] for shape, _ in INPUTS.values() if shape), 1)
        part = full // BATCH_SLICES if MODE == "batch" else full
        self.w, self.forward = self._prepare(weights, part, INTRA_OP_THREADS)
        same = SERIAL_THREADS == INTRA_OP_THREADS
        self.serial_w, self.serial_forward = (
            (self.w, self.forward) if same else self._prepare(weights, part, SERIAL_THREADS)
        )

    @staticmethod
    def _prepare(weights, batch, threads):
        """The weights, and forward_serial compiled (compiled_forward), for ``threads`` torch threads."""
        with onnx_torch_threads(threads):
            with torch.inference_mode():
                w = prepare_weights(weights, batch)
            return w, compiled_forward(w, batch)

    def __call__(self, **inputs):
        inputs = {k: torch.as_tensor(x) for k, x in inputs.items()}
        if MODE == "batch":
            return self._batch_parallel(inputs)
        if len(CLUSTERS) == 1:  # the whole graph, compiled where COMPILE says so
            with onnx_torch_threads(INTRA_OP_THREADS), torch.inference_mode():
                return self.forward(self.w, inputs)
        v = dict(inputs)
        ev = {name: threading.Event() for name in CROSS_VALUES}
        _run_all(self._workers, [(fn, (self.w, v, ev)) for fn in CLUSTERS], ev)
        return {name: v[name] for name in OUTPUTS}

    def _batch_parallel(self, inputs):
        """Hyperclustering: split the batch, run the whole graph on each slice in parallel, concatenate."""
        parts = zip(*(x.chunk(BATCH_SLICES) for x in inputs.values()))
        slices = [dict(zip(inputs, p)) for p in parts]
        results = [None] * len(slices)

        def run_slice(i):
            results[i] = self.forward(self.w, slices[i])

        _run_all(self._workers, [(run_slice, (i,)) for i in range(len(slices))], {})
        return {name: torch.cat([r[name] for r in results]) for name in OUTPUTS}

    def serial(self, **inputs):
        """The serial reference, on the caller's thread with SERIAL_THREADS intra-op threads (in batch mode
        the slices one after another)."""
        inputs = {k: torch.as_tensor(x) for k, x in inputs.items()}
        with onnx_torch_threads(SERIAL_THREADS), torch.inference_mode():
            if MODE != "batch":
                return self.serial_forward(self.serial_w, inputs)
            parts = zip(*(x.chunk(BATCH_SLICES) for x in inputs.values()))
            results = [self.serial_forward(self.serial_w, dict(zip(inputs, p))) for p in parts]
            return {name: torch.cat([r[name] for r in results]) for name in OUTPUTS}

    def close(self):
        for w in self._workers:
            w.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def load(weights_path=None, runtime=None, keep_memory=True):
    """The model with its weights (default: the .pt file next to this module). ``runtime`` (default
    RUNTIME): "threads" runs the clusters on threads of this process (needs only torch); "processes" runs
    each in a worker process of its own, so that they do not share a GIL (needs reflow installed).
    ``keep_memory``: let malloc keep freed memory for the next call (process-wide, see
    onnx_keep_freed_memory), as onnxruntime's arena does; False leaves this process's malloc as it is."""
    path = Path(weights_path) if weights_path else Path(__file__).with_suffix(".pt")
    if (runtime or RUNTIME) == "processes":
        from reflow.onnx.processes import ProcessModel

        return ProcessModel(__file__, path)
    return ParallelModel(torch.load(path, weights_only=True), keep_memory)


def random_inputs(seed=0, batch=None):
    """Random inputs of the shapes in INPUTS (with ``batch`` rows, where given)."""
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for name, (shape, dtype) in INPUTS.items():
        shape = (batch, *shape[1:]) if batch and shape else shape
        x = torch.rand(shape, generator=gen)
        out[name] = x.to(dtype) if dtype.is_floating_point else (x * 10).to(dtype)
    return out


def _median_time(fn, repeats=10):
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


if __name__ == "__main__":
    x = random_inputs()
    with load(runtime="threads") as reference, load() as model:
        ref, par = reference.serial(**x), model(**x)
        diffs = [float((ref[k] - par[k]).abs().max()) for k in OUTPUTS if ref[k].is_floating_point()]
        err = max(diffs, default=0.0)
        t_ser = _median_time(lambda: reference.serial(**x))
        t_par = _median_time(lambda: model(**x))
    print(f"max |serial - parallel| = {err:.3g} ({RUNTIME})")
    print(f"serial {t_ser * 1e3:.2f} ms, parallel {t_par * 1e3:.2f} ms, speedup {t_ser / t_par:.2f}x")
    sys.exit(0)
'''
