"""The errors the client raises.

::

    APIError
    ├── APIStatusError              the server answered with an error status
    │   ├── BadRequestError             400  the image could not be decoded
    │   ├── AuthenticationError         401  missing API key
    │   ├── PermissionDeniedError       403  wrong API key
    │   ├── NotFoundError               404  unknown gallery id
    │   ├── PayloadTooLargeError        413
    │   ├── UnsupportedMediaTypeError   415
    │   ├── UnprocessableEntityError    422  a parameter is out of range
    │   ├── RateLimitError              429
    │   ├── ServiceUnavailableError     503  not ready or overloaded
    │   └── InternalServerError         other 5xx
    ├── APIConnectionError          no answer at all
    │   └── APITimeoutError
    └── APIResponseValidationError  an answer that does not match the API's schema
"""

from __future__ import annotations

import email.utils
import math
import time
from typing import Any

import httpx

from .types import ErrorResponse

__all__ = [
    "APIError",
    "APIStatusError",
    "BadRequestError",
    "AuthenticationError",
    "PermissionDeniedError",
    "NotFoundError",
    "PayloadTooLargeError",
    "UnsupportedMediaTypeError",
    "UnprocessableEntityError",
    "RateLimitError",
    "ServiceUnavailableError",
    "InternalServerError",
    "APIConnectionError",
    "APITimeoutError",
    "APIResponseValidationError",
]


class APIError(Exception):
    """Base class of every error raised by the client."""

    message: str
    request: httpx.Request | None

    def __init__(self, message: str, *, request: httpx.Request | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.request = request


class APIStatusError(APIError):
    """The server answered with a 4xx or 5xx status.

    ``code`` and ``message`` are the server's own (``{"error": {"code", "message"}}``); ``code``
    is None when the answer did not come from the service (a proxy's HTML page, say).
    """

    status_code: int
    code: str | None
    response: httpx.Response

    def __init__(self, message: str, *, response: httpx.Response, code: str | None = None) -> None:
        super().__init__(message, request=response.request)
        self.response = response
        self.status_code = response.status_code
        self.code = code

    @property
    def request_id(self) -> str | None:
        """The server's id of the request (``X-Request-ID``), which its log lines carry: quote
        it when reporting a failure."""
        return self.response.headers.get("x-request-id")

    @property
    def retry_after(self) -> float | None:
        """Seconds the server asked the client to wait (``Retry-After``), if it said."""
        return parse_retry_after(self.response.headers.get("retry-after"))

    def __str__(self) -> str:
        code = f" {self.code}" if self.code else ""
        return f"HTTP {self.status_code}{code}: {self.message}"


class BadRequestError(APIStatusError):
    """400: the server could not decode an image, or the request is malformed."""


class AuthenticationError(APIStatusError):
    """401: the endpoint needs an API key and none was sent."""


class PermissionDeniedError(APIStatusError):
    """403: the API key was not accepted."""


class NotFoundError(APIStatusError):
    """404: no gallery item (or route) with that id."""


class ConflictError(APIStatusError):
    """409: the gallery was changed by another server process (``gallery_conflict``), or a reload
    failed and the old version still serves (``reload_failed``)."""


class PayloadTooLargeError(APIStatusError):
    """413: an image or the whole request is larger than the server accepts."""


class UnsupportedMediaTypeError(APIStatusError):
    """415: the file is not an image type the server reads."""


class UnprocessableEntityError(APIStatusError):
    """422: a parameter (``top_k``, ``k``, ``tta``, ...) is invalid."""


class RateLimitError(APIStatusError):
    """429: too many requests."""


class ServiceUnavailableError(APIStatusError):
    """503: the model is not loaded yet or the server is overloaded; see ``retry_after``."""


class InternalServerError(APIStatusError):
    """Any other 5xx."""


class APIConnectionError(APIError):
    """The request got no answer: refused connection, reset, DNS failure, ..."""

    def __init__(self, message: str = "Connection error.", *, request: httpx.Request | None = None) -> None:
        super().__init__(message, request=request)


class APITimeoutError(APIConnectionError):
    """The request timed out (connecting, writing or waiting for the answer)."""

    def __init__(self, message: str = "Request timed out.", *, request: httpx.Request | None = None) -> None:
        super().__init__(message, request=request)


class APIResponseValidationError(APIError):
    """A successful answer whose body is not what the API promises."""

    def __init__(self, message: str, *, response: httpx.Response) -> None:
        super().__init__(message, request=response.request)
        self.response = response
        self.status_code = response.status_code


_STATUS_ERRORS: dict[int, type[APIStatusError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    413: PayloadTooLargeError,
    415: UnsupportedMediaTypeError,
    422: UnprocessableEntityError,
    429: RateLimitError,
    503: ServiceUnavailableError,
}


def make_status_error(response: httpx.Response) -> APIStatusError:
    """The exception for an error answer, carrying the server's code and message."""
    code, message = _error_details(response)
    status = response.status_code
    cls = _STATUS_ERRORS.get(status)
    if cls is None:
        cls = InternalServerError if status >= 500 else APIStatusError
    return cls(message, response=response, code=code)


def _error_details(response: httpx.Response) -> tuple[str | None, str]:
    """``(code, message)`` from the service's error body, or the best that can be said otherwise."""
    try:
        body: Any = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        try:
            error = ErrorResponse.from_json(body).error  # the service's one error shape
            return error.code, error.message
        except (LookupError, TypeError, ValueError):
            pass  # not the service's answer (a proxy's, a load balancer's)
        # FastAPI's default shape, in case an error escapes the service's own handlers.
        if "detail" in body:
            return None, str(body["detail"])
    text = response.text.strip()
    return None, text[:500] or f"{response.status_code} {response.reason_phrase}".strip()


def parse_retry_after(value: str | None) -> float | None:
    """A ``Retry-After`` header in seconds: either a number of seconds or an HTTP date."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        parsed = email.utils.parsedate_tz(value)
        if parsed is None:
            return None
        seconds = email.utils.mktime_tz(parsed) - time.time()
    if not math.isfinite(seconds):
        return None
    return max(seconds, 0.0)
