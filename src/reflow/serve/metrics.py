"""Prometheus metrics of one server: requests by status, latency histograms per request and per operator,
batch sizes, queue waits, shed requests, worker restarts, and gauges for what is in flight and queued.

Each server has its own registry (two servers in one process, as in tests, do not mix their numbers);
``/metrics`` serves ``render()`` in Prometheus' text format.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

# seconds: 100 us .. 10 s, denser where serving latencies live
LATENCY_BUCKETS = (1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 5e-2, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                   10.0)
SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)


class Metrics:
    """The counters and histograms the executor and the HTTP app update."""

    def __init__(self, flow: str) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("reflow_serve_requests", "HTTP requests answered, by status code",
                                ["flow", "code"], registry=r)
        self.latency = Histogram("reflow_serve_request_seconds", "Request latency, arrival to answer",
                                 ["flow"], buckets=LATENCY_BUCKETS, registry=r)
        self.operator = Histogram("reflow_serve_operator_seconds", "Time of one operator call on one batch",
                                  ["flow", "operator"], buckets=LATENCY_BUCKETS, registry=r)
        self.batch_rows = Histogram("reflow_serve_batch_rows", "Rows per operator call", ["flow", "operator"],
                                    buckets=SIZE_BUCKETS, registry=r)
        self.queue_wait = Histogram("reflow_serve_queue_seconds", "Time a request waited for a stage",
                                    ["flow", "stage"], buckets=LATENCY_BUCKETS, registry=r)
        self.shed = Counter("reflow_serve_shed", "Requests refused because the queues were full", ["flow"],
                            registry=r)
        self.restarts = Counter("reflow_serve_worker_restarts", "Worker processes restarted after dying",
                                ["flow"], registry=r)
        self.cancelled = Counter("reflow_serve_cancelled_batches", "Batches interrupted in a worker",
                                 ["flow", "stage"], registry=r)
        self.fetches = Counter("reflow_serve_store_fetches", "Values workers fetched from a store (misses)",
                               ["flow", "store"], registry=r)
        self.inflight = Gauge("reflow_serve_inflight", "Requests in flight", ["flow"], registry=r)
        self.queued = Gauge("reflow_serve_queued", "Requests waiting for a stage", ["flow", "stage"],
                            registry=r)
        self.flow = flow
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}

    def _child(self, metric: Any, *labels: str) -> Any:
        """The labelled child of ``metric`` (looked up once: ``labels()`` costs microseconds per call)."""
        key = (id(metric), labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(self.flow, *labels)
        return child

    def answered(self, code: int, seconds: float) -> None:
        self._child(self.requests, str(code)).inc()
        self._child(self.latency).observe(seconds)

    def ran(self, operator: str, seconds: float, rows: int) -> None:
        self._child(self.operator, operator).observe(seconds)
        self._child(self.batch_rows, operator).observe(rows)

    def waited(self, stage: str, seconds: float) -> None:
        self._child(self.queue_wait, stage).observe(seconds)

    def count(self, metric: Any, *labels: str, n: float = 1.0) -> None:
        """Add ``n`` to counter ``metric`` (shed, restarts, cancelled, fetches) with ``labels``."""
        self._child(metric, *labels).inc(n)

    def track(self, inflight: Callable[[], float], queued: dict[str, Callable[[], float]]) -> None:
        """Read the in-flight and per-stage queue gauges from the executor when scraped."""
        self.inflight.labels(self.flow).set_function(inflight)
        for stage, fn in queued.items():
            self.queued.labels(self.flow, stage).set_function(fn)

    def render(self) -> bytes:
        return generate_latest(self.registry)
