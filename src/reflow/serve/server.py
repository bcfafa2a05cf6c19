"""Serving a flow over HTTP: ``Server`` puts together the plan, the executor, the app and uvicorn.

``with Server(flow, workers=2) as srv:`` serves on a free port in a background thread (for tests and
notebooks; ``srv.url``), returning once every worker is ready; ``Server(...).run()`` serves in the foreground
until SIGINT/SIGTERM, which is what ``reflow serve`` does. Either way shutdown is graceful: uvicorn stops
accepting connections, requests in flight finish (up to ``drain_s``), then the workers stop and every
process, socket and shared-memory segment is released.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from reflow.errors import ServeError
from reflow.serve.executor import LocalExecutor
from reflow.serve.flow import Flow
from reflow.serve.metrics import Metrics
from reflow.serve.optimize import Optimizations, optimize
from reflow.serve.plan import Plan


@dataclass
class ServeOptions:
    """How a flow is served (every field has a ``reflow serve`` flag)."""

    workers: int = 2
    deadline_ms: float | None = 10_000.0
    max_inflight: int = 256
    max_body_bytes: int = 16 * 1024 * 1024
    kill_grace_s: float = 1.0
    threads_per_worker: int = 1
    drain_s: float = 30.0
    start_timeout_s: float = 120.0
    optimize: Optimizations = field(default_factory=Optimizations)
    ray: str | None = None  # None: worker processes here; "local": a private Ray here; else a cluster address


class Server:
    """An HTTP server for ``flow``; see the module docstring."""

    def __init__(self, flow: Flow, host: str = "127.0.0.1", port: int = 0,
                 options: ServeOptions | None = None, **overrides: Any) -> None:
        import uvicorn

        from reflow.serve.app import make_app

        self.flow = flow
        self.options = options or ServeOptions()
        for k, v in overrides.items():
            if not hasattr(self.options, k):
                raise TypeError(f"Server got an unknown option {k!r}; see reflow.serve.server.ServeOptions")
            setattr(self.options, k, v)
        o = self.options
        if o.workers < 1:
            raise ServeError(f"serving needs at least 1 worker process, got {o.workers}")
        self.plan: Plan = optimize(flow, o.workers, o.optimize)
        pool = None
        if o.ray is not None:
            from reflow.serve.ray_backend import RayPool

            pool = RayPool(None if o.ray == "local" else o.ray)
        self.executor = LocalExecutor(self.plan, dict(flow.stores), max_inflight=o.max_inflight,
                                      deadline=None if o.deadline_ms is None else o.deadline_ms / 1e3,
                                      kill_grace=o.kill_grace_s, threads_per_worker=o.threads_per_worker,
                                      metrics=Metrics(flow.name), pool=pool)
        self.app = make_app(self.executor, flow.schema, flow.sink().schema, max_body_bytes=o.max_body_bytes,
                            start_timeout=o.start_timeout_s)
        config = uvicorn.Config(self.app, host=host, port=port, log_level="warning", lifespan="on",
                                timeout_graceful_shutdown=int(o.drain_s))
        self.uvicorn = _quiet_exit(uvicorn.Server)(config)
        self.host = host
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        servers = getattr(self.uvicorn, "servers", [])
        if not servers:
            raise ServeError("the server is not listening yet")
        port: int = servers[0].sockets[0].getsockname()[1]
        return port

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def run(self) -> None:
        """Serve in this thread until interrupted (SIGINT/SIGTERM drain, then stop)."""
        self.uvicorn.run()

    def start(self, timeout: float | None = None) -> Server:
        """Serve from a background thread; return once ready (every worker up)."""
        self._thread = threading.Thread(target=self.uvicorn.run, daemon=True, name="reflow-serve-http")
        self._thread.start()
        end = time.monotonic() + (timeout or self.options.start_timeout_s)
        while not (self.uvicorn.started and self.executor.ready):
            if self.executor.failed:
                self.stop()
                raise ServeError(f"the server for flow {self.flow.name!r} could not start: "
                                 f"{self.executor.failed}")
            if not self._thread.is_alive():
                raise ServeError(f"the server for flow {self.flow.name!r} stopped while starting")
            if time.monotonic() > end:
                self.stop()
                raise ServeError(f"the server for flow {self.flow.name!r} was not ready within "
                                 f"{timeout or self.options.start_timeout_s} s")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        """Drain and stop a server started with ``start``. Idempotent."""
        self.uvicorn.should_exit = True
        if self._thread is not None:
            self._thread.join(self.options.drain_s + 30)
            self._thread = None

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def _quiet_exit(base: type[Any]) -> type[Any]:
    """uvicorn's server, except that the signal that stopped it gracefully is not raised again once it has
    stopped (uvicorn does, so the process dies by that signal): ``reflow serve`` exits 0 after draining."""

    class Uvicorn(base):  # type: ignore[misc]
        def handle_exit(self, sig: int, frame: Any) -> None:
            super().handle_exit(sig, frame)
            getattr(self, "_captured_signals", []).clear()
    return Uvicorn
