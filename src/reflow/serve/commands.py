"""``reflow serve pipeline.py``: serve a pipeline over HTTP, or ``--explain`` its plan."""

from __future__ import annotations

import argparse
import sys
import threading
import time
from typing import Any

OPTIMIZATIONS = ("fusion", "batching", "compete", "locality", "placement")


def register(subparsers: Any) -> None:
    """Add ``serve`` to the ``reflow`` command."""
    p = subparsers.add_parser(
        "serve", help="serve an inference pipeline over HTTP",
        description="Serve the flow a pipeline file defines (a top-level `flow`) over HTTP: POST / with a "
        "JSON or binary table, GET /healthz, /readyz, /metrics. --explain prints the plan before and after "
        "optimization instead. See docs/serve.md.")
    p.add_argument("file", help="Python file defining `flow`")
    p.add_argument("--port", type=int, default=8000, help="TCP port (default 8000; 0 picks a free one)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--workers", "-w", type=int, default=2, help="worker processes (default 2)")
    p.add_argument("--explain", action="store_true", help="print the plan before and after optimization, "
                   "then exit")
    p.add_argument("--whole", action="store_true", help="fuse the whole pipeline into one stage per worker")
    for name in OPTIMIZATIONS:
        p.add_argument(f"--no-{name}", action="store_true", help=f"turn the {name} optimization off")
    p.add_argument("--deadline-ms", type=float, default=10_000.0,
                   help="default per-request deadline (default 10000; a request can ask for its own)")
    p.add_argument("--max-inflight", type=int, default=256,
                   help="requests in flight before new ones get 503 (default 256)")
    p.add_argument("--max-body-bytes", type=int, default=16 * 1024 * 1024,
                   help="largest request body; larger ones get 413 (default 16 MiB)")
    p.add_argument("--threads-per-worker", type=int, default=1,
                   help="torch/BLAS threads per worker (default 1)")
    p.add_argument("--drain-s", type=float, default=30.0, help="seconds to finish requests on shutdown")
    p.add_argument("--ray", nargs="?", const="local", default=None, metavar="ADDRESS",
                   help="run the workers as Ray actors over a cluster's nodes: 'auto', HOST:PORT or "
                   "ray://HOST:PORT (no address: a private Ray on this machine)")
    p.set_defaults(func=_serve)


def options_from(args: argparse.Namespace) -> Any:
    from reflow.serve.optimize import Optimizations
    from reflow.serve.server import ServeOptions

    opts = Optimizations(whole=args.whole, **{n: not getattr(args, f"no_{n}") for n in OPTIMIZATIONS})
    return ServeOptions(workers=args.workers, deadline_ms=args.deadline_ms, max_inflight=args.max_inflight,
                        max_body_bytes=args.max_body_bytes, threads_per_worker=args.threads_per_worker,
                        drain_s=args.drain_s, optimize=opts, ray=args.ray)


def _serve(args: argparse.Namespace) -> int:
    from reflow.serve.loader import load_pipeline
    from reflow.serve.optimize import explain
    from reflow.serve.server import Server

    flow = load_pipeline(args.file)
    options = options_from(args)
    if args.explain:
        print(explain(flow, options.workers, options.optimize))
        return 0
    server = Server(flow, args.host, args.port, options)

    def announce() -> None:
        while not (server.uvicorn.started and server.executor.ready):
            if server.uvicorn.should_exit:
                return
            time.sleep(0.05)
        print(f"reflow serve: flow {flow.name!r} ready on {server.url} ({options.workers} workers); "
              "Ctrl-C to stop", file=sys.stderr, flush=True)
    threading.Thread(target=announce, daemon=True).start()
    server.run()
    return 0
