"""POST /classify: top-k classes of one or several images (10-crop by default, as in the paper)."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, Query, UploadFile

from model_store.preprocessing import Tta
from service.deps import EngineDep, SettingsDep
from service.params import form_or_query, in_range
from service.predictions import image_probabilities, top_predictions
from service.routes.responses import error_responses
from service.schemas import ClassifyResponse, ClassifyResult, ModelRef
from service.uploads import read_uploads, require_form

router = APIRouter(
    tags=["classify"], dependencies=[Depends(require_form)], responses=error_responses(400, 413, 415, 422, 503)
)
DEFAULT_TOP_K = 5


@router.post("/classify", response_model=ClassifyResponse)
async def classify(
    engine: EngineDep,
    settings: SettingsDep,
    files: Annotated[list[UploadFile], File(description="one or several images (JPEG, PNG, ...)")],
    top_k_form: Annotated[int | None, Form(alias="top_k")] = None,
    top_k_query: Annotated[int | None, Query(alias="top_k", description="1..max_top_k, default 5")] = None,
    tta_form: Annotated[Tta | None, Form(alias="tta")] = None,
    tta_query: Annotated[Tta | None, Query(alias="tta", description="ten_crop (default) or center")] = None,
) -> ClassifyResponse:
    started = time.perf_counter()
    top_k = in_range("top_k", form_or_query("top_k", top_k_form, top_k_query, DEFAULT_TOP_K), 1, settings.max_top_k)
    tta: Tta = form_or_query("tta", tta_form, tta_query, "ten_crop")
    uploads = await read_uploads(files, settings)
    with engine.admit(len(uploads)):
        prepared = await engine.prepare_uploads(uploads, tta)
        outputs = await engine.infer_all(prepared)
    labels = engine.manifest.labels
    results = [
        ClassifyResult(
            filename=upload.filename,
            predictions=top_predictions(image_probabilities(out.logits), labels, top_k),
            width=image.width,
            height=image.height,
        )
        for upload, image, out in zip(uploads, prepared, outputs, strict=True)
    ]
    return ClassifyResponse(
        model=ModelRef.of(engine.manifest),
        tta=tta,
        results=results,
        elapsed_ms=(time.perf_counter() - started) * 1000,
    )
