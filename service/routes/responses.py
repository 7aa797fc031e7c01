"""What the routers' answers share: the error answers each documents in OpenAPI (all share
``ErrorResponse``), and the URL of a gallery item's thumbnail."""

from __future__ import annotations

from typing import Any

from fastapi import Request

from service.schemas import ErrorResponse

THUMBNAIL_PATH = "/gallery/{item_id}/thumbnail"


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {status: {"model": ErrorResponse} for status in statuses}


def thumbnail_url(request: Request, item_id: int) -> str:
    """The path of an item's thumbnail (under the server's root_path, as url_for gives it). Formatted
    rather than url_for, which walks every route on each call, several times per /similar answer."""
    return request.scope.get("root_path", "") + THUMBNAIL_PATH.format(item_id=item_id)
