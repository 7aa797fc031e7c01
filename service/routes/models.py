"""GET /v1/models: what is served: the manifest, the execution provider and the gallery size."""

from __future__ import annotations

from fastapi import APIRouter

from service.deps import EngineDep, RetrievalDep
from service.routes.responses import error_responses
from service.schemas import ModelInfo, ModelsResponse

router = APIRouter(prefix="/v1", tags=["models"], responses=error_responses(503))


@router.get("/models", response_model=ModelsResponse)
async def list_models(engine: EngineDep, retrieval: RetrievalDep) -> ModelsResponse:
    manifest = engine.manifest
    info = ModelInfo(
        name=manifest.name,
        version=manifest.version,
        provider=engine.provider,
        precision=engine.model.precision,
        gallery_size=len(retrieval),
        manifest=manifest,
    )
    return ModelsResponse(models=[info])
