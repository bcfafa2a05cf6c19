"""``reflow parallelize``: ONNX model -> parallel PyTorch module (+ weights), with a summary table.

torch and onnx are imported inside the command function only, so ``reflow --help`` stays fast.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

EPILOG = """\
examples:
  reflow parallelize model.onnx -o model_par.py --workers 4
  reflow parallelize model.onnx -o model_par.py --workers 2 --svg model_par.svg
  reflow parallelize --light inception_v1 --random-weights 0 -o inception_par.py --batch 8
  reflow parallelize model.onnx -o model_par.py --workers 2 --runtime processes   # clusters in processes
  python model_par.py        # check the generated code against its serial version and time both
"""


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "parallelize",
        help="turn an ONNX model into parallel PyTorch code for a multicore CPU",
        description="Import an ONNX model, measure each op's cost in PyTorch, cluster the graph for P "
        "workers (critical-path linear clustering, merging by simulated makespan, cloning of cheap shared "
        "nodes, batch slicing for batch > 1), time the best parallel plan against the whole graph on P torch "
        "threads and keep the faster, and write a readable Python module that runs the clusters on threads. "
        "The module needs only torch; its weights go to a .pt file next to it.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model", nargs="?", help="the .onnx file (or use --light)")
    p.add_argument(
        "-o", "--output", required=True, help="the Python module to write (weights: same name, .pt)"
    )
    p.add_argument(
        "-w",
        "--workers",
        type=int,
        default=os.cpu_count() or 1,
        help="threads to plan for (default: all cores)",
    )
    p.add_argument(
        "--batch", type=int, default=None, help="set the model's batch size (first input dimension)"
    )
    p.add_argument(
        "--light", metavar="NAME", help="use the onnx package's light_NAME model instead of a file"
    )
    p.add_argument(
        "--random-weights",
        type=int,
        metavar="SEED",
        default=None,
        help="replace the model's weights by seeded random ones (the light models need this)",
    )
    p.add_argument("--no-profile", action="store_true", help="use the analytic FLOP model, do not time ops")
    p.add_argument(
        "--runtime",
        choices=("auto", "threads", "processes"),
        default="auto",
        help="what the module's load() runs the clusters (or batch slices) on: threads of one process "
        "(needs only torch), worker processes over shared memory (no GIL between them; needs reflow), or "
        "auto: the plan made for processes, then whichever runtime measures faster for it here (default); "
        "the planner charges each cross-cluster wait what it costs on that runtime",
    )
    p.add_argument(
        "--no-compile",
        action="store_true",
        help="keep the module eager: by default a convolutional network's load() traces its whole graph into "
        "a oneDNN Graph (TorchScript, part of torch), which fuses and lays out its ops as onnxruntime does",
    )
    p.add_argument("--svg", metavar="PATH", help="also draw the clustered graph (.svg or .dot)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import onnx

    from reflow.errors import OnnxImportError
    from reflow.onnx.pipeline import is_parallel, parallelize
    from reflow.onnx.report import summary_table

    if (args.model is None) == (args.light is None):
        raise SystemExit("reflow parallelize: give a model file or --light NAME (one of them)")
    if args.light:
        from reflow.onnx.models import light_model_path

        proto = onnx.load(os.fspath(light_model_path(args.light)))
    else:
        try:
            proto = onnx.load(args.model)
        except Exception as e:
            raise OnnxImportError(f"cannot read ONNX model {args.model!r}: {e}") from e
    result = parallelize(
        proto,
        workers=args.workers,
        batch=args.batch,
        seed=args.random_weights,
        profile_ops=not args.no_profile,
        progress=True,
        runtime="threads" if args.runtime == "threads" else "processes",  # auto: see --runtime's help
        compile=not args.no_compile,
    )
    py, pt = result.code.write(args.output)
    print(summary_table(result))
    if result.measured_plans:
        timed = ", ".join(f"{k} {v * 1e3:.2f} ms" for k, v in result.measured_plans.items())
        print(f"plans timed here: {timed}; kept the faster")
    runtime = args.runtime
    if runtime == "auto":  # one cluster on one thread: a worker process would run the same code
        runtime = "threads"
        if is_parallel(result.plan):
            from reflow.onnx.processes import faster_runtime

            runtime, medians = faster_runtime(py)
            print("measured: " + ", ".join(f"{k} {v * 1e3:.2f} ms" for k, v in medians.items()))
    if runtime != "threads":
        py, pt = result.code.with_runtime(runtime).write(args.output)
    print(f"runtime: {runtime}")
    print(f"wrote {py} and {pt}")
    if args.svg:
        from reflow.graph.clustering import Clustering
        from reflow.graph.export import write_graph

        g = result.plan.graph
        io = tuple(n.name for n in g if not n.op.startswith("onnx."))  # inputs and outputs: their own box
        write_graph(g, args.svg, clustering=Clustering((*result.plan.clusters, io)))
        print(f"wrote {args.svg}")
    return 0
