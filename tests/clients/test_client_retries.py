"""The retry policy and the error tree, against small real ASGI apps on loopback: what is retried
(connection errors, timeouts, 408/429/502/503/504), how long the client waits (Retry-After,
back-off), and that nothing else is retried."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Callable
from typing import Any

import pytest
from alexnet_client import (
    APIConnectionError,
    APIResponseValidationError,
    APIStatusError,
    APITimeoutError,
    AsyncClient,
    AuthenticationError,
    BadRequestError,
    Client,
    ConflictError,
    InternalServerError,
    NotFoundError,
    PayloadTooLargeError,
    PermissionDeniedError,
    RateLimitError,
    ServiceUnavailableError,
    UnprocessableEntityError,
    UnsupportedMediaTypeError,
    _base,
)
from alexnet_client._constants import MAX_RETRY_AFTER, MAX_RETRY_DELAY
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

HEALTHY = {"status": "ok"}
JPEG = b"\xff\xd8\xff\xe0 fake"
ITEM = {"id": 1, "label": "cat", "source": "upload:image-0.jpg", "thumbnail_url": "/gallery/1/thumbnail"}
ADDED = {"ids": [1], "items": [ITEM], "gallery_size": 1}  # the service's IndexAddResponse


class Script:
    """An app whose every route answers from a script: the first answers in ``failures``, then
    ``final`` for good; it counts the calls it received."""

    def __init__(self, failures: list[Response | float], final: Response | None = None) -> None:
        self.failures = failures
        self.final = final or JSONResponse(HEALTHY)
        self.calls = 0

    async def answer(self, request: Request) -> Response:
        await request.body()
        self.calls += 1
        step = self.failures[self.calls - 1] if self.calls <= len(self.failures) else self.final
        if isinstance(step, float):  # a hang longer than the client's timeout
            await asyncio.sleep(step)
            return JSONResponse(HEALTHY)
        return step

    def app(self) -> Starlette:
        methods = ["GET", "POST", "DELETE"]
        return Starlette(routes=[Route("/{path:path}", self.answer, methods=methods)])


def unavailable(retry_after: str | None = "0") -> JSONResponse:
    headers = {"Retry-After": retry_after} if retry_after is not None else None
    return JSONResponse({"error": {"code": "overloaded", "message": "try later"}}, status_code=503, headers=headers)


def status(code: int) -> JSONResponse:
    return JSONResponse({"error": {"code": f"code_{code}", "message": f"message {code}"}}, status_code=code)


@pytest.fixture(autouse=True)
def fast_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """Back-off without Retry-After starts at 10 ms here instead of 0.5 s."""
    monkeypatch.setattr(_base, "INITIAL_RETRY_DELAY", 0.01)


def test_503_is_retried_until_success(serve: Callable[[Any], str]) -> None:
    script = Script([unavailable(), unavailable()])
    with Client(serve(script.app()), max_retries=2) as client:
        assert client.health().status == "ok"
    assert script.calls == 3


def test_retries_exhausted_raise_the_last_error(serve: Callable[[Any], str]) -> None:
    script = Script([], final=unavailable("0"))
    with Client(serve(script.app()), max_retries=2) as client, pytest.raises(ServiceUnavailableError) as excinfo:
        client.health()
    assert script.calls == 3
    error = excinfo.value
    assert (error.status_code, error.code, error.message, error.retry_after) == (503, "overloaded", "try later", 0.0)
    assert str(error) == "HTTP 503 overloaded: try later"


@pytest.mark.parametrize("code", [408, 429, 502, 503, 504])
def test_retryable_statuses(serve: Callable[[Any], str], code: int) -> None:
    script = Script([status(code)])
    with Client(serve(script.app()), max_retries=1) as client:
        assert client.health().status == "ok"
    assert script.calls == 2


@pytest.mark.parametrize("code", [400, 401, 403, 404, 409, 413, 415, 422, 500, 501])
def test_other_errors_are_never_retried(serve: Callable[[Any], str], code: int) -> None:
    script = Script([], final=status(code))
    with Client(serve(script.app()), max_retries=3) as client, pytest.raises(APIStatusError) as excinfo:
        client.remove_from_index(7)
    assert script.calls == 1
    assert (excinfo.value.status_code, excinfo.value.code, excinfo.value.message) == (
        code,
        f"code_{code}",
        f"message {code}",
    )


@pytest.mark.parametrize(
    ("code", "error"),
    [
        (400, BadRequestError),
        (401, AuthenticationError),
        (403, PermissionDeniedError),
        (404, NotFoundError),
        (413, PayloadTooLargeError),
        (415, UnsupportedMediaTypeError),
        (422, UnprocessableEntityError),
        (429, RateLimitError),
        (503, ServiceUnavailableError),
        (500, InternalServerError),
        (502, InternalServerError),
        (409, ConflictError),
        (410, APIStatusError),
    ],
)
def test_status_to_exception(serve: Callable[[Any], str], code: int, error: type[APIStatusError]) -> None:
    with Client(serve(Script([], final=status(code)).app()), max_retries=0) as client, pytest.raises(error) as excinfo:
        client.health()
    assert type(excinfo.value) is error and excinfo.value.status_code == code


def test_error_bodies_that_are_not_the_services(serve: Callable[[Any], str]) -> None:
    script = Script(
        [
            PlainTextResponse("upstream exploded", status_code=500),
            JSONResponse({"detail": "Not Found"}, status_code=404),
            Response(b"", status_code=500),
        ]
    )
    with Client(serve(script.app()), max_retries=0) as client:
        with pytest.raises(InternalServerError) as text:
            client.health()
        with pytest.raises(NotFoundError) as detail:
            client.health()
        with pytest.raises(InternalServerError) as empty:
            client.health()
    assert (text.value.code, text.value.message) == (None, "upstream exploded")
    assert (detail.value.code, detail.value.message) == (None, "Not Found")
    assert empty.value.message == "500 Internal Server Error"


def test_success_that_breaks_the_schema(serve: Callable[[Any], str]) -> None:
    script = Script([JSONResponse({"unexpected": True}), PlainTextResponse("ok")])
    with Client(serve(script.app())) as client:
        with pytest.raises(APIResponseValidationError, match="KeyError"):
            client.health()
        with pytest.raises(APIResponseValidationError, match="expected a JSON answer"):
            client.health()


def test_retry_after_is_honoured(serve: Callable[[Any], str]) -> None:
    script = Script([unavailable("1")])
    with Client(serve(script.app()), max_retries=1) as client:
        started = time.monotonic()
        client.health()
        waited = time.monotonic() - started
    assert script.calls == 2
    assert 0.95 <= waited < 3.0


def test_retry_delay_policy() -> None:
    assert _base.retry_delay(0, 2.5) == 2.5
    assert _base.retry_delay(5, 10_000.0) == MAX_RETRY_AFTER  # a server cannot park the client for hours
    for attempt in range(8):
        full = min(_base.INITIAL_RETRY_DELAY * 2**attempt, MAX_RETRY_DELAY)
        delays = {_base.retry_delay(attempt, None) for _ in range(50)}
        assert all(0.75 * full <= d <= full for d in delays)
        assert len(delays) > 1  # jittered


def test_gallery_changes_are_retried_only_when_not_acted_upon(serve: Callable[[Any], str]) -> None:
    added = JSONResponse(ADDED)
    refused = Script([unavailable(), status(429)], final=added)
    with Client(serve(refused.app()), max_retries=2) as client:
        assert client.add_to_index(JPEG, "cat").added[0].id == 1
    assert refused.calls == 3

    for code in (502, 504, 408):
        maybe_applied = Script([status(code)], final=added)
        with Client(serve(maybe_applied.app()), max_retries=2) as client, pytest.raises(APIStatusError):
            client.add_to_index(JPEG, "cat")
        assert maybe_applied.calls == 1


def test_timeouts_are_retried_then_raised(serve: Callable[[Any], str]) -> None:
    script = Script([], final=1.0)  # type: ignore[arg-type]
    with Client(serve(script.app()), timeout=0.2, max_retries=1) as client, pytest.raises(APITimeoutError):
        client.health()
    assert script.calls == 2

    recovers = Script([1.0])
    with Client(serve(recovers.app()), timeout=0.2, max_retries=1) as client:
        assert client.health().status == "ok"


def test_a_timed_out_gallery_change_is_not_retried(serve: Callable[[Any], str]) -> None:
    script = Script([1.0], final=JSONResponse(ADDED))
    with Client(serve(script.app()), timeout=0.2, max_retries=2) as client, pytest.raises(APITimeoutError):
        client.add_to_index(JPEG, "cat")
    assert script.calls == 1


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_connection_refused(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="alexnet_client")
    with Client(f"http://127.0.0.1:{free_port()}", max_retries=2) as client, pytest.raises(APIConnectionError) as exc:
        client.health()
    assert not isinstance(exc.value, APITimeoutError)
    assert "could not reach" in exc.value.message
    assert sum("retrying" in record.getMessage() for record in caplog.records) == 2


def test_async_client_follows_the_same_policy(serve: Callable[[Any], str]) -> None:
    flaky = Script([unavailable(), status(502)])
    four_oh_four = Script([], final=status(404))
    flaky_url, missing_url = serve(flaky.app()), serve(four_oh_four.app())

    async def run() -> None:
        async with AsyncClient(flaky_url, max_retries=2) as client:
            assert (await client.health()).status == "ok"
        async with AsyncClient(missing_url, max_retries=2) as client:
            with pytest.raises(NotFoundError):
                await client.remove_from_index(3)
        async with AsyncClient(f"http://127.0.0.1:{free_port()}", max_retries=1) as client:
            with pytest.raises(APIConnectionError):
                await client.health()

    asyncio.run(run())
    assert (flaky.calls, four_oh_four.calls) == (3, 1)
