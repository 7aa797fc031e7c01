"""Assertions shared by the reliability tests (fixtures live in conftest.py)."""

from __future__ import annotations

from pathlib import Path

import httpx

API_KEY = "reliability-test-key-0123456789"
KEY = {"X-API-Key": API_KEY}


def assert_error(response: httpx.Response, status: int | set[int], code: str | None = None) -> dict:
    """The service's one error shape, as JSON, with no traceback leaking out."""
    statuses = {status} if isinstance(status, int) else status
    assert response.status_code in statuses, (response.status_code, response.text[:500])
    assert response.headers["content-type"].startswith("application/json"), response.headers
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    assert isinstance(body["error"]["code"], str) and body["error"]["message"], body
    assert "Traceback" not in response.text and 'File "' not in response.text, response.text
    if code is not None:
        assert body["error"]["code"] == code, body
    return body["error"]


def rss_mib(pid: int) -> float:
    """Resident memory of a process (VmRSS of /proc/<pid>/status) in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")
