"""``X-Request-ID``: every answer carries one, the caller's own when it is a plain token, else a new
one, so that a client's error report and the server's log name the same request."""

from __future__ import annotations

import re
import uuid

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.logs import current_request_id

HEADER = "X-Request-ID"
_RAW_HEADER = HEADER.lower().encode()
_TOKEN = re.compile(rb"[A-Za-z0-9._:-]{1,128}")  # what a log line and a header can carry as they are


def incoming_id(headers: list[tuple[bytes, bytes]]) -> str | None:
    """The caller's request id, if it sent a usable one."""
    for name, value in headers:
        if name == _RAW_HEADER:
            return value.decode() if _TOKEN.fullmatch(value) else None
    return None


def request_id(request: Request) -> str:
    """This request's id (set by ``RequestIdMiddleware``)."""
    return getattr(request.state, "request_id", "-")


class RequestIdMiddleware:
    """Gives each HTTP request an id (``request.state.request_id``) and puts it on the answer."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = incoming_id(scope["headers"]) or uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = rid
        # not reset after: uvicorn serves each request in a task of its own, and writes its access
        # line and the traceback of a failed request in it after the app has returned
        current_request_id.set(rid)
        header = (_RAW_HEADER, rid.encode())

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", ()), header]}
            await send(message)

        await self.app(scope, receive, send_with_id)
