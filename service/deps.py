"""What routes get injected: the app's settings, engine, gallery and metrics (all made in the
lifespan and kept on ``app.state``), and the API-key check of the mutating routes (and, with
``require_key_for_reads``, of all the others but health, readiness and metrics).

They are ``async def`` although none awaits: FastAPI runs a plain ``def`` dependency on a worker
thread, a thread hop per dependency per request."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader

from service.engine import Engine
from service.errors import Forbidden, MissingApiKey, NotReady
from service.metrics import Metrics
from service.retrieval import Retrieval
from service.settings import Settings


async def app_settings(request: Request) -> Settings:
    return request.app.state.settings


async def app_metrics(request: Request) -> Metrics:
    return request.app.state.metrics


def _not_ready(request: Request) -> NotReady:
    retry_after = str(request.app.state.settings.retry_after_s)
    return NotReady("the model and gallery are not loaded yet", {"Retry-After": retry_after})


async def ready_engine(request: Request) -> Engine:
    engine: Engine | None = getattr(request.app.state, "engine", None)
    if engine is None or not engine.ready:
        raise _not_ready(request)
    return engine


async def ready_retrieval(request: Request) -> Retrieval:
    retrieval: Retrieval | None = getattr(request.app.state, "retrieval", None)
    if retrieval is None:
        raise _not_ready(request)
    return retrieval


SettingsDep = Annotated[Settings, Depends(app_settings)]
MetricsDep = Annotated[Metrics, Depends(app_metrics)]
EngineDep = Annotated[Engine, Depends(ready_engine)]
RetrievalDep = Annotated[Retrieval, Depends(ready_retrieval)]


# a security scheme, so OpenAPI documents which routes need the key; our own errors, not FastAPI's
api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="the server's api_key")


async def require_api_key(
    settings: SettingsDep, x_api_key: Annotated[str | None, Depends(api_key_header)] = None
) -> None:
    """401 without a key, 403 with a wrong one, and 403 always when the server has none set. The
    comparison takes the same time wherever the keys differ (hmac.compare_digest)."""
    if settings.api_key is None:
        raise Forbidden("this route is disabled: the server has no api_key set")
    if not x_api_key:
        raise MissingApiKey("send the X-API-Key header")
    if not hmac.compare_digest(x_api_key.encode(), settings.api_key.get_secret_value().encode()):
        raise Forbidden("the X-API-Key is not valid")
