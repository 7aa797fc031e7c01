"""The error answers each router documents in OpenAPI (all share ``ErrorResponse``)."""

from __future__ import annotations

from typing import Any

from service.schemas import ErrorResponse


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {status: {"model": ErrorResponse} for status in statuses}
