"""POST /similar: the gallery items nearest to an image (or to a gallery item) in fc7 space."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, Query, Request, UploadFile

from model_store.gallery import GALLERY_FEATURE
from service.deps import EngineDep, RetrievalDep, SettingsDep
from service.errors import InvalidParameter
from service.params import form_or_query, in_range
from service.predictions import image_probabilities, top_predictions
from service.retrieval import Feature, query_vector
from service.routes.responses import error_responses, thumbnail_url
from service.schemas import ModelRef, Neighbor, SimilarQuery, SimilarResponse
from service.uploads import read_uploads, require_form

router = APIRouter(
    tags=["similar"], dependencies=[Depends(require_form)], responses=error_responses(400, 404, 413, 415, 422, 503)
)
DEFAULT_K = 6
QUERY_TOP_K = 5


@router.post("/similar", response_model=SimilarResponse)
async def similar(
    request: Request,
    engine: EngineDep,
    retrieval: RetrievalDep,
    settings: SettingsDep,
    file: Annotated[UploadFile | None, File(description="the query image (or give id)")] = None,
    id_form: Annotated[int | None, Form(alias="id")] = None,
    id_query: Annotated[int | None, Query(alias="id", description="a gallery item as the query (or send file)")] = None,
    k_form: Annotated[int | None, Form(alias="k")] = None,
    k_query: Annotated[int | None, Query(alias="k", description="1..max_k, default 6")] = None,
    feature_form: Annotated[Feature | None, Form(alias="feature")] = None,
    feature_query: Annotated[Feature | None, Query(alias="feature", description="center (default) or ten_crop")] = None,
) -> SimilarResponse:
    started = time.perf_counter()
    k = in_range("k", form_or_query("k", k_form, k_query, DEFAULT_K), 1, settings.max_k)
    feature: Feature = form_or_query("feature", feature_form, feature_query, GALLERY_FEATURE)
    item_id = form_or_query("id", id_form, id_query, None)
    if (file is None) == (item_id is None):
        raise InvalidParameter("send either a file or the id of a gallery item")

    if item_id is not None:
        if feature != GALLERY_FEATURE:
            raise InvalidParameter(f"a gallery item is queried by its stored {GALLERY_FEATURE} fc7 vector; send a file")
        item = retrieval.item(item_id)
        query = SimilarQuery(id=item_id, filename=None, label=item.label, predictions=None)
        hits = await retrieval.search(retrieval.vector(item_id), k, exclude=[item_id])
    else:
        assert file is not None  # exactly one of the two, checked above
        (upload,) = await read_uploads([file], settings)
        with engine.admit(1):
            (image,) = await engine.prepare_uploads([upload], "ten_crop" if feature == "ten_crop" else "center")
            out = await engine.infer(image.crops)
        predictions = top_predictions(image_probabilities(out.logits), engine.manifest.labels, QUERY_TOP_K)
        query = SimilarQuery(id=None, filename=upload.filename, label=None, predictions=predictions)
        hits = await retrieval.search(query_vector(out.features, feature), k)

    neighbors = [
        Neighbor(
            id=hit.item.id,
            label=hit.item.label,
            distance=hit.distance,
            thumbnail_url=thumbnail_url(request, hit.item.id),
            source=hit.item.source,
        )
        for hit in hits
    ]
    return SimilarResponse(
        model=ModelRef.of(engine.manifest),
        feature=feature,
        query=query,
        neighbors=neighbors,
        elapsed_ms=(time.perf_counter() - started) * 1000,
    )
