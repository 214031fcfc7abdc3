"""Prometheus metrics of the service, in a registry of its own (several apps can live in one process)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

if TYPE_CHECKING:
    from genlab.service.engine import Engine
    from genlab.store.records import ModelInfo

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class ServiceMetrics:
    def __init__(self, engine: Engine) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("genlab_requests", "HTTP requests answered", ["method", "route", "status"],
                                registry=self.registry)  # fmt: skip
        self.latency = Histogram("genlab_request_seconds", "Time to answer a request", ["route"],
                                 buckets=LATENCY_BUCKETS, registry=self.registry)  # fmt: skip
        self.outputs = Counter("genlab_generations", "Outputs generated and stored", ["model", "kind"],
                               registry=self.registry)  # fmt: skip
        loaded = Gauge("genlab_models_loaded", "Models held in the model cache", registry=self.registry)
        loaded.set_function(lambda: len(engine.cache))
        for kind in ("image", "text"):
            what = f"{kind.title()} generation calls (each may serve several requests)"
            calls = Gauge(f"genlab_{kind}_batches", what, registry=self.registry)
            calls.set_function(lambda kind=kind: engine.batches[kind])
            served = Gauge(f"genlab_{kind}_batched_requests", f"{kind.title()} requests served by those calls",
                           registry=self.registry)  # fmt: skip
            served.set_function(lambda kind=kind: engine.batched_jobs[kind])

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(route).observe(seconds)

    def generated(self, model: ModelInfo, count: int) -> None:
        self.outputs.labels(f"{model.name}:{model.version}", model.modality).inc(count)

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
