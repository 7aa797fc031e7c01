"""POST /admin/reload: serve the configured model version anew (``latest`` after a new publish)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from service.deps import EngineDep, require_api_key
from service.routes.responses import error_responses
from service.schemas import ModelRef, ReloadResponse
from service.serving import reload_version

router = APIRouter(prefix="/admin", tags=["admin"], dependencies=[Depends(require_api_key)])


@router.post("/reload", response_model=ReloadResponse, responses=error_responses(401, 403, 409, 503))
async def reload_model(request: Request, _: EngineDep) -> ReloadResponse:
    """Resolve, verify, load and warm up the configured version, then swap it in; on failure the
    served version stays and the answer (409 reload_failed) says why."""
    outcome = await reload_version(request.app.state)
    return ReloadResponse(
        reloaded=outcome.reloaded,
        model=ModelRef.of(outcome.current.manifest),
        previous=ModelRef.of(outcome.previous.manifest),
    )
