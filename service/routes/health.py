"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST

from service.deps import EngineDep, MetricsDep, RetrievalDep
from service.routes.responses import error_responses
from service.schemas import HealthResponse, ModelRef, ReadyResponse

router = APIRouter(tags=["operations"])


@router.get("/healthz", response_model=HealthResponse)
async def healthz() -> HealthResponse:
    """The process answers (says nothing about the model)."""
    return HealthResponse()


@router.get("/readyz", response_model=ReadyResponse, responses=error_responses(503))
async def readyz(engine: EngineDep, retrieval: RetrievalDep) -> ReadyResponse:
    """Model and gallery loaded and warmed up; 503 while starting or shutting down."""
    return ReadyResponse(
        model=ModelRef.of(engine.manifest),
        provider=engine.provider,
        precision=engine.model.precision,
        runtime=engine.choice.runtime,
        runtime_reason=engine.choice.reason,
        inference_workers=engine.parallelism.workers,
        threads_per_run=engine.parallelism.threads,
        decode_threads=engine.decode_threads,
        gallery_size=len(retrieval),
    )


@router.get("/metrics", response_class=Response, responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}})
async def metrics(registry: MetricsDep) -> Response:
    return Response(registry.render(), media_type=CONTENT_TYPE_LATEST)
