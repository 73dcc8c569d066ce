"""Prometheus metrics (prefix ``lungseg_``) in a registry of the app's own, not a global one.

With several uvicorn workers each process counts its own requests; prometheus_client's
multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``, set by ``python -m service.api`` when
``LUNGSEG_WORKERS`` > 1) makes ``/metrics`` on any worker report the sums over all of them.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, multiprocess
from starlette.types import ASGIApp, Message, Receive, Scope, Send

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"  # read by prometheus_client at import
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


@dataclass
class Metrics:
    """The service's collectors, registered in ``registry``."""

    registry: CollectorRegistry
    requests: Counter
    latency: Histogram
    inference: Histogram
    in_flight: Gauge
    inference_queue: Gauge
    rejected: Counter
    model_info: Gauge
    model_unavailable: Gauge
    exposition: CollectorRegistry
    multiprocess_dir: Path | None = None

    @classmethod
    def create(cls) -> Metrics:
        """The collectors; in multiprocess mode ``exposition`` reads every worker's files."""
        reg = CollectorRegistry(auto_describe=True)
        labels = ["route", "method", "status", "model"]
        folder = os.environ.get(MULTIPROC_ENV)
        exposition = reg
        if folder:
            exposition = CollectorRegistry()
            multiprocess.MultiProcessCollector(exposition, path=folder)
        return cls(
            registry=reg,
            exposition=exposition,
            multiprocess_dir=Path(folder) if folder else None,
            requests=Counter("lungseg_requests", "HTTP requests", labels, registry=reg),
            latency=Histogram(
                "lungseg_request_duration_seconds",
                "HTTP request latency",
                labels,
                buckets=LATENCY_BUCKETS,
                registry=reg,
            ),
            inference=Histogram(
                "lungseg_inference_duration_seconds",
                "model inference time (the infer stage only)",
                ["model", "provider"],
                buckets=LATENCY_BUCKETS,
                registry=reg,
            ),
            in_flight=Gauge(
                "lungseg_requests_in_flight",
                "HTTP requests in progress",
                registry=reg,
                multiprocess_mode="livesum",
            ),
            inference_queue=Gauge(
                "lungseg_inferences_admitted",
                "inferences running or queued",
                registry=reg,
                multiprocess_mode="livesum",
            ),
            rejected=Counter(
                "lungseg_rejected", "requests refused with 503 at capacity", registry=reg
            ),
            model_info=Gauge(
                "lungseg_model_info",
                "loaded models (value 1)",
                ["name", "version", "kind", "modality", "provider"],
                registry=reg,
                multiprocess_mode="livemax",
            ),
            model_unavailable=Gauge(
                "lungseg_model_unavailable",
                "models that failed to load (value 1)",
                ["name"],
                registry=reg,
                multiprocess_mode="livemax",
            ),
        )

    def worker_exited(self) -> None:
        """Drop this process's live gauges from the multiprocess files (no-op otherwise)."""
        if self.multiprocess_dir is not None:
            multiprocess.mark_process_dead(os.getpid(), str(self.multiprocess_dir))


class MetricsMiddleware:
    """Pure ASGI middleware: counts and times every HTTP request by route template and status.

    Handlers put the model that ran in ``scope["state"]["model"]`` (``request.state.model``).
    """

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500
        start = time.perf_counter()

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        self.metrics.in_flight.inc()
        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            self.metrics.in_flight.dec()
            route = scope.get("route")
            labels = {
                "route": getattr(route, "path", "unmatched"),
                "method": scope.get("method", ""),
                "status": str(status),
                "model": scope.get("state", {}).get("model", ""),
            }
            self.metrics.requests.labels(**labels).inc()
            self.metrics.latency.labels(**labels).observe(time.perf_counter() - start)
