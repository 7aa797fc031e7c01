"""The one place where failures become HTTP answers: ``{"error": {"code": ..., "message": ...}}``.

Domain errors (``ServiceError`` subclasses, the preprocessing's ``ImageError``, the gallery's
``UnknownItemError``), FastAPI's validation errors and Starlette's HTTP errors all get this shape;
anything unexpected is logged with its traceback and answered with a bare 500.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from model_store.gallery import GalleryConflict, UnknownItemError
from model_store.preprocessing import ImageError, ImageTooLargeError
from service.request_ids import HEADER, request_id

log = logging.getLogger(__name__)


class ServiceError(Exception):
    status: int = 500
    code: str = "internal_error"

    def __init__(self, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.message = message
        self.headers = headers or {}


class BadImage(ServiceError):
    status, code = 400, "bad_image"


class PayloadTooLarge(ServiceError):
    status, code = 413, "payload_too_large"


class UnsupportedMediaType(ServiceError):
    status, code = 415, "unsupported_media_type"


class InvalidParameter(ServiceError):
    status, code = 422, "invalid_parameter"


class NotFound(ServiceError):
    status, code = 404, "not_found"


class MissingApiKey(ServiceError):
    status, code = 401, "missing_api_key"


class Forbidden(ServiceError):
    status, code = 403, "forbidden"


class NotReady(ServiceError):
    status, code = 503, "not_ready"


class Overloaded(ServiceError):
    status, code = 503, "overloaded"


class InferenceTimeout(ServiceError):
    status, code = 503, "inference_timeout"


class ReloadFailed(ServiceError):
    status, code = 409, "reload_failed"


class BodyTooLarge(StarletteHTTPException):
    """Raised while the body is read (see ``service.uploads.BodyLimitMiddleware``); an HTTPException so
    FastAPI's form parsing passes it on instead of turning it into a generic 400."""

    def __init__(self, limit: int):
        super().__init__(413, f"the request body exceeds the limit of {limit} bytes")


_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_parameter",
    503: "not_ready",
}


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path", "header"))
        parts.append(f"{where or 'request'}: {err.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"


async def _service_error(_: Request, exc: ServiceError) -> JSONResponse:
    return error_response(exc.status, exc.code, exc.message, exc.headers)


async def _image_error(_: Request, exc: ImageError) -> JSONResponse:
    if isinstance(exc, ImageTooLargeError):
        return error_response(413, "image_too_large", str(exc))
    return error_response(400, "bad_image", str(exc))


async def _unknown_item(_: Request, exc: UnknownItemError) -> JSONResponse:
    return error_response(404, "not_found", str(exc))


async def _gallery_conflict(_: Request, exc: GalleryConflict) -> JSONResponse:
    return error_response(409, "gallery_conflict", str(exc))


async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
    return error_response(422, "invalid_parameter", _validation_message(exc))


async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
    code = _HTTP_CODES.get(exc.status_code, HTTPStatus(exc.status_code).phrase.lower().replace(" ", "_"))
    message = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
    return error_response(exc.status_code, code, message, dict(exc.headers or {}))


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    # Starlette re-raises it after this answer, so the server logs the traceback; uvicorn then
    # closes the connection, which the answer announces: a client that reused it would be reset
    # Starlette's outermost middleware sends this answer, past RequestIdMiddleware: add the id here
    rid = request_id(request)
    log.error("unhandled %s on %s %s (request %s)", type(exc).__name__, request.method, request.url.path, rid)
    return error_response(500, "internal_error", "internal server error", {"Connection": "close", HEADER: rid})


def install_error_handlers(app: FastAPI) -> None:
    # each handler takes its own exception type; Starlette's signature says Exception
    handlers: dict[type[Exception], Callable[[Request, Any], Awaitable[Response]]] = {
        ServiceError: _service_error,
        ImageError: _image_error,
        UnknownItemError: _unknown_item,
        GalleryConflict: _gallery_conflict,
        RequestValidationError: _validation_error,
        StarletteHTTPException: _http_error,
        Exception: _unexpected,
    }
    for exc_type, handler in handlers.items():
        app.add_exception_handler(exc_type, handler)
