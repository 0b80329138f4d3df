"""Prometheus metrics of one app, in a registry of its own (several apps in one process,
as in the tests, never share or collide)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector

from model_core.review import REASONS

STAGES = ("decode", "scale", "queue", "inference", "explanation", "encode")
# Seconds: from a sub-millisecond queue wait to a slow explanation batch on a CPU.
_LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)


class Metrics:
    """Request, stage, batch and model metrics, registered in `registry`."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry = registry or CollectorRegistry()
        # process_resident_memory_bytes, process_cpu_seconds_total, open fds: what sizing
        # and leak checks read.
        ProcessCollector(registry=registry)
        self.requests = Counter(
            "wbc_http_requests",
            "HTTP requests answered, by route template and status",
            ["method", "route", "status"],
            registry=registry,
        )
        self.request_seconds = Histogram(
            "wbc_http_request_duration_seconds",
            "Time to answer an HTTP request",
            ["method", "route"],
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.in_flight = Gauge(
            "wbc_http_requests_in_flight", "HTTP requests being answered", registry=registry
        )
        self.stage_seconds = Histogram(
            "wbc_stage_duration_seconds",
            "Time spent per stage: decode (image to model "
            "input), queue (waiting for a batch), inference and explanation (one batch "
            "pass), encode (response tensors and PNGs)",
            ["stage"],
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.batch_size = Histogram(
            "wbc_batch_size",
            "Items per model pass",
            ["pass_kind"],
            buckets=_BATCH_BUCKETS,
            registry=registry,
        )
        self.model_load_seconds = Gauge(
            "wbc_model_load_seconds",
            "Time the served model took to load, verify and warm",
            registry=registry,
        )
        self.model_info = Gauge(
            "wbc_model_info",
            "The served model (always 1); backend: what runs its forward "
            "passes (tensorflow or onnxruntime)",
            ["name", "version", "device", "backend"],
            registry=registry,
        )
        self.model_ready = Gauge(
            "wbc_model_ready", "1 while the model is loaded and its device works", registry=registry
        )
        self.reloads = Counter(
            "wbc_model_reloads",
            "Reload attempts by result (reloaded, unchanged, failed)",
            ["result"],
            registry=registry,
        )
        self.queue_depth = Gauge(
            "wbc_queue_depth",
            "Images admitted and not yet answered (waiting, or in a model "
            "pass), per queue: forward (/predict, /v2 infer) or explain (/explain); the "
            "autoscaling signal",
            ["queue"],
            registry=registry,
        )
        self.queue_limit = Gauge(
            "wbc_queue_limit",
            "Most images a queue admits; requests beyond are refused (503)",
            ["queue"],
            registry=registry,
        )
        self.requests_shed = Counter(
            "wbc_requests_shed",
            "Requests answered without their model pass, by queue and "
            "reason: full (refused, 503), deadline (expired while queued, 504), disconnected "
            "(client gone while queued)",
            ["queue", "reason"],
            registry=registry,
        )
        self.answers = Counter(
            "wbc_answers",
            "Answers given (one per cell classified), by whether they were flagged for review",
            ["review"],
            registry=registry,
        )
        self.reviews = Counter(
            "wbc_review_reasons",
            "Answers flagged for review, by reason (an answer may have several)",
            ["reason"],
            registry=registry,
        )
        for stage in STAGES:
            self.stage_seconds.labels(stage)  # every stage shows from the start, at zero
        for reason in REASONS:
            self.reviews.labels(reason)
        for flagged in ("true", "false"):
            self.answers.labels(flagged)

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(method, route, str(status)).inc()
        self.request_seconds.labels(method, route).observe(seconds)

    def count_review(self, reasons: Sequence[str]) -> None:
        """One answer, flagged for review for `reasons` (none: accepted)."""
        self.answers.labels("true" if reasons else "false").inc()
        for reason in reasons:
            self.reviews.labels(reason).inc()

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.stage_seconds.labels(name).observe(time.perf_counter() - started)

    def batch_observer(self, stage: str) -> BatchMetrics:
        return BatchMetrics(self, stage)

    def model_loaded(
        self, name: str, version: int, device: str, backend: str, seconds: float
    ) -> None:
        self.model_info.clear()
        self.model_info.labels(name, str(version), device, backend).set(1)
        self.model_load_seconds.set(seconds)

    def watch_readiness(self, is_ready: Callable[[], bool]) -> None:
        self.model_ready.set_function(lambda: float(is_ready()))


class BatchMetrics:
    """What a micro-batcher reports (an `app.engine.batching.BatchObserver`), as metrics."""

    def __init__(self, metrics: Metrics, stage: str) -> None:
        self._queue = metrics.stage_seconds.labels("queue")
        self._pass = metrics.stage_seconds.labels(stage)
        self._size = metrics.batch_size.labels(stage)

    def queued(self, seconds: float) -> None:
        self._queue.observe(seconds)

    def ran(self, size: int, seconds: float) -> None:
        self._size.observe(size)
        self._pass.observe(seconds)
