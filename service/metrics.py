"""Prometheus metrics, in a registry of the app's own (several apps in one process don't clash)."""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 4, 8, 10, 16, 20, 32, 40, 64, 80, 128, 160, 256)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "alexnet_http_requests", "HTTP requests by route template, method and status",
            ["route", "method", "status"], registry=self.registry,
        )  # fmt: skip
        self.latency = Histogram(
            "alexnet_http_request_duration_seconds", "HTTP request latency by route template and method",
            ["route", "method"], buckets=LATENCY_BUCKETS, registry=self.registry,
        )  # fmt: skip
        self.batch_crops = Histogram(
            "alexnet_inference_batch_size", "crops per ONNX Runtime run", buckets=BATCH_BUCKETS, registry=self.registry
        )
        self.batch_images = Histogram(
            "alexnet_inference_batch_images", "images per ONNX Runtime run", buckets=BATCH_BUCKETS,
            registry=self.registry,
        )  # fmt: skip
        self.inference_seconds = Histogram(
            "alexnet_inference_seconds", "time of one ONNX Runtime run", buckets=LATENCY_BUCKETS, registry=self.registry
        )
        self.queue_depth = Gauge("alexnet_batch_queue_depth", "images waiting for the batcher", registry=self.registry)
        self.in_flight = Gauge(
            "alexnet_images_in_flight", "images admitted: decoding, queued or running", registry=self.registry
        )
        self.rejected = Counter(
            "alexnet_overload_rejections", "requests answered 503 because max_queue was reached", registry=self.registry
        )
        self.inference_timeouts = Counter(
            "alexnet_inference_timeouts", "images whose inference took longer than inference_timeout_s",
            registry=self.registry,
        )  # fmt: skip
        self.gallery_items = Gauge("alexnet_gallery_items", "items in the retrieval gallery", registry=self.registry)

    def observe_batch(self, crops: int, images: int, seconds: float) -> None:
        self.batch_crops.observe(crops)
        self.batch_images.observe(images)
        self.inference_seconds.observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)


def route_template(scope: Scope) -> str:
    """The path template of the route that answered, or "unmatched". FastAPI's routes put themselves
    in ``scope["route"]``; the plain Starlette routes FastAPI adds itself (GET /openapi.json) leave
    only their endpoint, so the app's routes are searched for it."""
    route = scope.get("route")
    if route is None and (endpoint := scope.get("endpoint")) is not None and "app" in scope:
        route = next((r for r in scope["app"].routes if getattr(r, "endpoint", None) is endpoint), None)
    return getattr(route, "path", "unmatched")


class MetricsMiddleware:
    """Counts and times every HTTP request under its route template (``/index/{item_id}``, not the
    raw path, so the label set stays small)."""

    def __init__(self, app: ASGIApp, metrics: Metrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500
        started = time.perf_counter()
        recorded = False

        def record() -> None:
            nonlocal recorded
            if not recorded:
                recorded = True
                route, method = route_template(scope), scope["method"]
                self.metrics.requests.labels(route, method, str(status)).inc()
                self.metrics.latency.labels(route, method).observe(time.perf_counter() - started)

        async def send_and_record(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body" and not message.get("more_body", False):
                record()  # before the last byte leaves: a client that has its answer finds it counted
            await send(message)

        try:
            await self.app(scope, receive, send_and_record)
        finally:
            record()  # no complete answer (an error before or while sending)
