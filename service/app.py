"""The FastAPI app: ``create_app(settings)`` builds it; its lifespan loads the model (checksums
verified), opens the ONNX Runtime session and the gallery, warms up, and keeps them on
``app.state`` for the dependencies in ``service.deps``.

``create_app(settings, open_serving=...)`` swaps what the lifespan opens (``serving.open_version``
by default) for another ``OpenServing``: the tests serve an engine on a fake model this way
(tests/fake_serving.py), with every route, middleware and error handler real."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware

from service.deps import require_api_key
from service.engine import Engine
from service.errors import install_error_handlers
from service.metrics import Metrics, MetricsMiddleware
from service.request_ids import HEADER as REQUEST_ID_HEADER
from service.request_ids import RequestIdMiddleware
from service.retrieval import Retrieval
from service.routes import OPEN_ROUTERS, ROUTERS
from service.routes.responses import error_responses
from service.serving import bind_gauges, open_version
from service.settings import Settings, get_settings
from service.uploads import BodyLimitMiddleware

log = logging.getLogger(__name__)
OpenServing = Callable[[Settings, Metrics], Awaitable[tuple[Engine, Retrieval]]]
"""What the lifespan calls for the engine (warmed up) and the gallery it serves."""


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    app.state.engine, app.state.retrieval = await app.state.open_serving(app.state.settings, app.state.metrics)
    try:
        yield
    finally:
        await app.state.engine.close()  # the one served now (a reload may have swapped it)
        log.info("stopped")


def create_app(settings: Settings | None = None, open_serving: OpenServing = open_version) -> FastAPI:
    settings = settings or get_settings()
    app = FastAPI(
        title="AlexNet classification and retrieval",
        summary="Caltech-101 AlexNet (Krizhevsky et al., 2012) served with ONNX Runtime and FAISS",
        lifespan=lifespan,
        docs_url=None,  # /docs is service.routes.docs: FastAPI's own loads its scripts from a CDN (and so does ReDoc)
        redoc_url=None,
        telemetry=None if settings.opentelemetry else {"tracing": False, "metrics": False, "logs": False},
    )
    app.state.settings = settings
    app.state.open_serving = open_serving
    app.state.metrics = Metrics()
    app.state.engine = app.state.retrieval = None
    app.state.reload_lock = asyncio.Lock()
    bind_gauges(app.state, app.state.metrics)
    install_error_handlers(app)
    # the last added is the outermost: metrics see every answer, CORS headers go on the 413s too,
    # and every answer has a request id (but the 500s, which service.errors gives theirs)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_request_bytes)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Content-Type", "X-API-Key", REQUEST_ID_HEADER],
            expose_headers=[REQUEST_ID_HEADER],
        )
    app.add_middleware(MetricsMiddleware, metrics=app.state.metrics)
    app.add_middleware(RequestIdMiddleware)
    key_for_reads = [Depends(require_api_key)] if settings.require_key_for_reads else []
    for router in ROUTERS:
        app.include_router(
            router, dependencies=key_for_reads, responses=error_responses(401, 403) if key_for_reads else None
        )
    for router in OPEN_ROUTERS:
        app.include_router(router)
    return app
