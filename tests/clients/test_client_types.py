"""Answers the service itself never gives (a proxy's 503, a body that breaks the contract) and
Retry-After forms. What the service does give is parsed in test_client_sdk.py, against the real
app, and its shapes are held to the SDK's types by test_contract.py."""

from __future__ import annotations

import email.utils
import time

import httpx
import pytest
from alexnet_client import APIResponseValidationError, Client, ServiceUnavailableError
from alexnet_client._exceptions import parse_retry_after


def answering(status: int, content: bytes, content_type: str = "application/json") -> Client:
    """A Client whose every request gets this answer (httpx.MockTransport as its ``http_client``)."""
    transport = httpx.MockTransport(
        lambda request: httpx.Response(status, content=content, headers={"content-type": content_type})
    )
    return Client("http://service", http_client=httpx.Client(transport=transport), max_retries=0)


def test_a_503_that_is_not_the_services_is_not_ready_and_unavailable() -> None:
    for body, content_type in [
        (b"<html>502 Bad Gateway</html>", "text/html"),
        (b'{"detail": "down"}', "application/json"),
    ]:
        readiness = answering(503, body, content_type).ready()
        assert (readiness.ready, readiness.status, readiness.details, readiness.message) == (
            False,
            "unavailable",
            None,
            None,
        )
        with pytest.raises(ServiceUnavailableError) as excinfo:
            answering(503, body, content_type).health()
        assert excinfo.value.code is None


def test_answers_that_break_the_contract_are_validation_errors() -> None:
    for body in (b'{"models": []}', b'{"models": [{"name": "m"}]}', b"[]"):
        with pytest.raises(APIResponseValidationError):
            answering(200, body).model_info()
    with pytest.raises(APIResponseValidationError, match="gallery_size"):
        answering(200, b'{"id": 3, "deleted": true}').remove_from_index(3)
    with pytest.raises(APIResponseValidationError, match="model"):
        answering(200, b'{"status": "ready"}').ready()  # a ReadyResponse says what is served


def test_retry_after_forms() -> None:
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after("0.5") == 0.5
    assert parse_retry_after("-4") == 0.0
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None and parse_retry_after("nan") is None
    in_ten_seconds = email.utils.formatdate(time.time() + 10, usegmt=True)
    assert 8.0 <= parse_retry_after(in_ten_seconds) <= 10.0  # type: ignore[operator]
