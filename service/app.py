"""The FastAPI app: ``create_app(settings)`` builds it; its lifespan loads the model (checksums
verified), opens the ONNX Runtime session and the gallery, warms up, and keeps them on
``app.state`` for the dependencies in ``service.deps``."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from service.engine import load_engine
from service.errors import install_error_handlers
from service.metrics import Metrics, MetricsMiddleware
from service.retrieval import load_retrieval
from service.routes import ROUTERS
from service.settings import Settings, get_settings
from service.uploads import BodyLimitMiddleware

log = logging.getLogger(__name__)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings, metrics = app.state.settings, app.state.metrics
    engine = await asyncio.to_thread(load_engine, settings, metrics)
    retrieval = await asyncio.to_thread(load_retrieval, engine.version, metrics)
    await engine.start()
    app.state.engine, app.state.retrieval = engine, retrieval
    try:
        yield
    finally:
        await engine.close()
        log.info("stopped")


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    app = FastAPI(
        title="AlexNet classification and retrieval",
        summary="Caltech-101 AlexNet (Krizhevsky et al., 2012) served with ONNX Runtime and FAISS",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.metrics = Metrics()
    app.state.engine = app.state.retrieval = None
    install_error_handlers(app)
    # the last added is the outermost: metrics see every answer, CORS headers go on the 413s too
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_request_bytes)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Content-Type", "X-API-Key"],
        )
    app.add_middleware(MetricsMiddleware, metrics=app.state.metrics)
    for router in ROUTERS:
        app.include_router(router)
    return app
