"""Upload limits: the request body (checked on Content-Length and counted while it is read), the
number of files, each file's size and declared type.

Content types: a part declared as ``image/*`` or ``application/octet-stream`` (or undeclared) is
accepted and its bytes decide (400 when they are not a decodable image); any other declared type
(``text/plain``, ``application/pdf``, ...) is answered 415 without being decoded.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request, UploadFile
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.errors import BadImage, BodyTooLarge, PayloadTooLarge, UnsupportedMediaType, error_response
from service.settings import Settings

MAX_FILENAME_CHARS = 255


class BodyLimitMiddleware:
    """Refuses a body over ``max_bytes``: at once when Content-Length says so, otherwise as soon as
    the bytes read pass the limit, so no request body is ever read unbounded."""

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            response = error_response(
                413, "payload_too_large",
                f"the request body is {declared} bytes; the limit is {self.max_bytes}", {"Connection": "close"},
            )  # fmt: skip
            await response(scope, receive, send)
            return
        received = 0

        async def receive_limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
            return message

        await self.app(scope, receive_limited, send)


@dataclass(frozen=True)
class Upload:
    filename: str
    data: bytes


def _accepted_type(content_type: str | None) -> bool:
    if not content_type:
        return True
    media = content_type.split(";", 1)[0].strip().lower()
    return media.startswith("image/") or media == "application/octet-stream"


async def read_uploads(files: list[UploadFile], settings: Settings) -> list[Upload]:
    """Check every part before any is decoded, and read each with its size bounded."""
    if len(files) > settings.max_files_per_request:
        raise PayloadTooLarge(f"{len(files)} files sent; the limit is {settings.max_files_per_request} per request")
    uploads = []
    for number, part in enumerate(files, start=1):
        name = (part.filename or f"file{number}")[:MAX_FILENAME_CHARS]
        if not _accepted_type(part.content_type):
            raise UnsupportedMediaType(f"{name}: content type {part.content_type!r} is not an image")
        data = await part.read(settings.max_upload_bytes + 1)
        if len(data) > settings.max_upload_bytes:
            raise PayloadTooLarge(f"{name}: the file exceeds the limit of {settings.max_upload_bytes} bytes")
        if not data:
            raise BadImage(f"{name}: the file is empty")
        uploads.append(Upload(name, data))
    return uploads


FORM_TYPES = ("multipart/form-data", "application/x-www-form-urlencoded")


async def require_form(request: Request) -> None:
    """Router dependency: the upload routes take form bodies (or none: /similar?id=3); a body of
    any other declared type (JSON, raw image bytes, ...) is answered 415."""
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media and media not in FORM_TYPES:
        raise UnsupportedMediaType(f"send multipart/form-data, not {media!r}")
