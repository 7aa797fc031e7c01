"""The gallery: add images (POST /index), remove one (DELETE /index/{id}), get a thumbnail.
Changes need the X-API-Key and are on disk before they are answered."""

from __future__ import annotations

from typing import Annotated, cast

import numpy as np
from fastapi import APIRouter, Depends, File, Form, Path, Request, Response, UploadFile

from model_store.gallery import GALLERY_FEATURE, gallery_vector
from service.deps import EngineDep, RetrievalDep, SettingsDep, require_api_key
from service.errors import InvalidParameter
from service.routes.responses import THUMBNAIL_PATH, error_responses, thumbnail_url
from service.schemas import IndexAddResponse, IndexDeleteResponse, IndexedItem
from service.uploads import read_uploads, require_form

router = APIRouter(tags=["gallery"])
MAX_LABEL_CHARS = 100
ItemId = Annotated[int, Path(ge=0, description="gallery item id")]


def check_labels(labels: list[str], count: int) -> list[str]:
    """One label per file, or one for all of them; each non-empty after trimming."""
    labels = [label.strip() for label in labels]
    if len(labels) not in (1, count):
        raise InvalidParameter(f"send one label per file ({count}) or one label for all, got {len(labels)}")
    for label in labels:
        if not label or len(label) > MAX_LABEL_CHARS or not label.isprintable():
            raise InvalidParameter(f"labels must be 1..{MAX_LABEL_CHARS} printable characters, got {label!r}")
    return labels * count if len(labels) == 1 else labels


@router.post(
    "/index",
    response_model=IndexAddResponse,
    dependencies=[Depends(require_form), Depends(require_api_key)],
    responses=error_responses(400, 401, 403, 409, 413, 415, 422, 503),
)
async def add_to_index(
    request: Request,
    engine: EngineDep,
    retrieval: RetrievalDep,
    settings: SettingsDep,
    files: Annotated[list[UploadFile], File(description="images to add")],
    labels: Annotated[list[str], Form(description="one label per file, or one label for all")],
) -> IndexAddResponse:
    uploads = await read_uploads(files, settings)
    labels = check_labels(labels, len(uploads))
    with engine.admit(len(uploads)):
        prepared = await engine.prepare_uploads(uploads, GALLERY_FEATURE, thumbnail=True)
        outputs = await engine.infer_all(prepared)
    items = await retrieval.add(
        np.stack([gallery_vector(out.features) for out in outputs]),
        labels=labels,
        sources=[f"upload:{upload.filename}" for upload in uploads],
        thumbnails=cast(list[bytes], [image.thumbnail for image in prepared]),  # thumbnail=True: all made
    )
    return IndexAddResponse(
        ids=[item.id for item in items],
        items=[
            IndexedItem(id=item.id, label=item.label, source=item.source, thumbnail_url=thumbnail_url(request, item.id))
            for item in items
        ],
        gallery_size=len(retrieval),
    )


@router.delete(
    "/index/{item_id}",
    response_model=IndexDeleteResponse,
    dependencies=[Depends(require_api_key)],
    responses=error_responses(401, 403, 404, 409, 422, 503),
)
async def remove_from_index(item_id: ItemId, retrieval: RetrievalDep) -> IndexDeleteResponse:
    await retrieval.remove(item_id)
    return IndexDeleteResponse(id=item_id, gallery_size=len(retrieval))


@router.get(
    THUMBNAIL_PATH,
    name="gallery_thumbnail",
    response_class=Response,
    responses={200: {"content": {"image/jpeg": {}}, "description": "JPEG thumbnail"}, **error_responses(404, 422, 503)},
)
def gallery_thumbnail(item_id: ItemId, retrieval: RetrievalDep) -> Response:
    # ids are never reused, so a thumbnail never changes
    return Response(retrieval.thumbnail(item_id), media_type="image/jpeg", headers={"Cache-Control": "max-age=86400"})
