"""Access control and limits: the API key on reads when configured, CORS preflights, inference
timeouts, path traversal through ids, and no stack trace in any answer. On the service app with
the fake model (tests/fake_serving.py: every route, middleware and error handler real), in process
or, where raw request paths are sent, on loopback.

(test_service_bad_inputs.py covers the key on POST/DELETE /index, body and file limits, and
test_service_settings.py the constant-time comparison.)
"""

from __future__ import annotations

import logging
import os
import socket
from pathlib import Path

import httpx
import pytest
from fake_serving import FAKE_MODEL_NAME, fake_app, picture, run_server
from image_helpers import encode
from pydantic import ValidationError
from reliability_helpers import API_KEY, KEY, assert_error

from model_store.gallery import THUMBS_DIR
from service.settings import Settings

ALLOWED = "http://allowed.example:3000"
READS = (  # method, path, form fields
    ("GET", "/v1/models", None),
    ("GET", "/gallery/0/thumbnail", None),
    ("POST", "/similar", {"id": "0"}),
)


def test_access_settings_fail_at_start_up() -> None:
    with pytest.raises(ValidationError, match="require_key_for_reads needs an api_key"):
        Settings(require_key_for_reads=True)
    with pytest.raises(ValidationError, match="greater than 0"):
        Settings(inference_timeout_s=0)
    settings = Settings(api_key=API_KEY, require_key_for_reads=True, inference_timeout_s=2.5)
    assert settings.require_key_for_reads and settings.inference_timeout_s == 2.5
    assert not Settings().require_key_for_reads and Settings().inference_timeout_s == 30


@pytest.fixture(scope="module")
def photo_jpeg() -> bytes:
    return encode(picture(538, 355, 11))


def raw_get(url: str, raw_path: str) -> tuple[int, bytes]:
    """GET with the path sent exactly as given (httpx would normalise '..' away)."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(f"GET {raw_path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def test_reads_need_the_key_when_configured_and_cors_preflights(start_fast, photo_jpeg: bytes) -> None:
    fast = start_fast(api_key=API_KEY, require_key_for_reads=True, cors_origins=[ALLOWED])
    http = fast.client
    for path in ("/healthz", "/readyz", "/metrics"):  # probes and scrapers send no key
        assert http.get(path).status_code == 200, path
    for method, path, form in READS:
        assert_error(http.request(method, path, data=form), 401, "missing_api_key")
        assert_error(http.request(method, path, data=form, headers={"X-API-Key": API_KEY[:-1] + "x"}), 403)
        assert http.request(method, path, data=form, headers=KEY).status_code == 200, path
    upload = {"files": ("a.jpg", photo_jpeg, "image/jpeg")}
    assert_error(http.post("/classify", files=upload), 401, "missing_api_key")
    assert http.post("/classify", files=upload, headers=KEY).status_code == 200
    security = http.get("/openapi.json").json()["paths"]["/v1/models"]["get"]["security"]
    assert security == [{"APIKeyHeader": []}]

    preflight = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "x-api-key"}
    allowed = http.options("/classify", headers={"Origin": ALLOWED, **preflight})
    assert allowed.status_code == 200  # answered before the key check: a browser sends no key here
    assert allowed.headers["access-control-allow-origin"] == ALLOWED
    assert "x-api-key" in allowed.headers["access-control-allow-headers"].lower()
    assert "POST" in allowed.headers["access-control-allow-methods"]
    refused = http.options("/classify", headers={"Origin": "http://evil.example", **preflight})
    assert refused.status_code == 400 and "access-control-allow-origin" not in refused.headers
    simple = http.get("/v1/models", headers={"Origin": "http://evil.example", **KEY})
    assert simple.status_code == 200 and "access-control-allow-origin" not in simple.headers
    simple = http.get("/v1/models", headers={"Origin": ALLOWED, **KEY})
    assert simple.headers["access-control-allow-origin"] == ALLOWED


def test_slow_inference_is_a_json_503_and_the_service_goes_on(start_fast, photo_jpeg: bytes) -> None:
    # a limit no inference can meet: the batcher holds every image 50 ms for others to join it, so every image times
    # out (with no wait, the fake model can answer inside 1 ms when the machine is busy)
    fast = start_fast(api_key=API_KEY, inference_timeout_s=0.001, batch_max_wait_ms=50, retry_after_s=2)
    http = fast.client
    size = http.get("/readyz").json()["gallery_size"]
    upload = {"files": ("a.jpg", photo_jpeg, "image/jpeg")}
    response = http.post("/classify", files=upload)
    assert "inference_timeout_s" in assert_error(response, 503, "inference_timeout")["message"]
    assert response.headers["retry-after"] == "2"
    assert_error(http.post("/similar", files={"file": ("a.jpg", photo_jpeg, "image/jpeg")}), 503)
    assert_error(http.post("/index", files=upload, data={"labels": "x"}, headers=KEY), 503, "inference_timeout")
    assert http.get("/readyz").json()["gallery_size"] == size  # nothing added
    assert http.post("/similar", data={"id": "0"}).status_code == 200  # no inference: unaffected
    assert "alexnet_inference_timeouts_total 3.0" in http.get("/metrics").text
    assert http.get("/readyz").status_code == 200


def test_no_path_traversal_through_ids_and_no_stack_traces(
    fake_store: Path, photo_jpeg: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    thumbs = fake_store / FAKE_MODEL_NAME / "v1" / "index" / THUMBS_DIR
    (thumbs / "1.jpg").unlink()
    (thumbs / "1.jpg").mkdir()  # an unreadable thumbnail: the one internal error a request can reach
    caplog.set_level(logging.INFO)
    with run_server(fake_app(fake_store, api_key=API_KEY)) as url, httpx.Client(base_url=url, timeout=30) as http:
        for raw_path, statuses in [
            ("/gallery/../../etc/passwd/thumbnail", {404}),
            ("/gallery/%2e%2e/thumbnail", {422}),
            ("/gallery/%2e%2e%2f%2e%2e%2fetc%2fpasswd/thumbnail", {404}),
            ("/gallery/..%5c..%5cetc%5cpasswd/thumbnail", {422}),
            ("/gallery/0%00/thumbnail", {422}),
            ("/gallery/-1/thumbnail", {422}),
            ("/gallery/99999999999999999999999999/thumbnail", {404}),
            ("/gallery/9223372036854775808/thumbnail", {404}),
            ("/gallery/1e3/thumbnail", {422}),
            ("/static/..%2f..%2fpyproject.toml", {404}),
            ("/static/%2e%2e/%2e%2e/pyproject.toml", {404}),
        ]:
            status, body = raw_get(url, raw_path)
            assert status in statuses, (raw_path, status, body[:200])
            assert body.startswith(b'{"error":{') and b"root:" not in body and b"[project]" not in body, raw_path
        for item_id in ("-1", "99999999999999999999999999", "%2e%2e"):
            status = http.delete(f"/index/{item_id}", headers=KEY).status_code
            assert status in (404, 422), (item_id, status)
        assert_error(http.post("/similar", data={"id": "-5"}), {404, 422})
        assert_error(http.post("/similar", data={"id": str(2**70)}), 404, "not_found")

        broken = http.get("/gallery/1/thumbnail", headers={"X-Request-ID": "thumb-500"})
        error = assert_error(broken, 500, "internal_error")
        assert broken.headers["x-request-id"] == "thumb-500"
        assert error["message"] == "internal server error"  # what went wrong stays in the server's log
        assert str(thumbs) not in broken.text and "IsADirectoryError" not in broken.text
        assert broken.headers["connection"] == "close"  # uvicorn drops the connection after a 500: reuse is reset
        assert http.get("/gallery/0/thumbnail").status_code == 200 and http.get("/readyz").status_code == 200
    assert "IsADirectoryError" in caplog.text  # logged with its traceback for the operator
    assert "unhandled IsADirectoryError on GET /gallery/1/thumbnail (request thumb-500)" in caplog.text
    assert os.path.isdir(thumbs / "1.jpg")
