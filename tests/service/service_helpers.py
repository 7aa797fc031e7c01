"""Assertions and paths shared by the service tests (fixtures live in conftest.py)."""

from __future__ import annotations

from pathlib import Path

import httpx

FACE = Path("images/Faces/image_0004.jpg")  # test30 split, 538x355
WATCH = Path("images/watch/image_0001.jpg")  # train80 split, 300x242


def assert_error(response: httpx.Response, status: int, code: str | None = None) -> dict:
    """The service's error shape, with no traceback leaking out."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    assert body["error"]["message"] and "Traceback" not in response.text
    if code is not None:
        assert body["error"]["code"] == code, body
    return body["error"]


def assert_serving(http: httpx.Client, jpeg: bytes) -> None:
    """Still ready and still answering correctly."""
    assert http.get("/readyz").status_code == 200
    response = http.post("/classify", files={"files": ("ok.jpg", jpeg, "image/jpeg")}, data={"tta": "center"})
    assert response.status_code == 200, response.text
