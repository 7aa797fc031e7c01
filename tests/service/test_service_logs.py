"""ALEXNET_LOG_FORMAT=json: every line the server writes is one JSON object, and the lines written
for a request (its access line, the traceback of its failure) carry its request id."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from model_store.gallery import THUMBS_DIR


def test_json_logs_carry_the_request_id(start_service, private_store: Path, tiny_model) -> None:
    thumbs = private_store / tiny_model.name / tiny_model.version_dir.name / "index" / THUMBS_DIR
    (thumbs / "1.jpg").unlink()
    (thumbs / "1.jpg").mkdir()  # an unreadable thumbnail: a request that fails inside the app
    server = start_service(private_store, log_format="json", access_log="true")
    with httpx.Client(base_url=server.url, timeout=30) as http:
        assert http.get("/healthz", headers={"X-Request-ID": "ok-1"}).status_code == 200
        assert http.get("/gallery/1/thumbnail", headers={"X-Request-ID": "fail-2"}).status_code == 500
    assert server.stop() in (0, -15)

    entries = [json.loads(line) for line in server.log().splitlines() if line.strip()]  # each line: JSON
    assert {"time", "level", "logger", "message"} <= set(entries[0])
    assert any(e["logger"] == "service.engine" and "ready on" in e["message"] for e in entries)
    assert not any("request_id" in e for e in entries if e["logger"] == "service.engine")  # not a request's

    access = {e["request_id"]: e for e in entries if e["logger"] == "uvicorn.access"}
    ok = access["ok-1"]
    assert (ok["method"], ok["path"], ok["status"], ok["http_version"]) == ("GET", "/healthz", 200, "1.1")
    assert access["fail-2"]["status"] == 500
    failure = [e for e in entries if e.get("request_id") == "fail-2" and "exception" in e]
    assert failure and "IsADirectoryError" in failure[0]["exception"]
    assert any(e["message"].endswith("(request fail-2)") for e in entries if e["level"] == "ERROR")


def test_text_access_lines_end_with_the_request_id(start_service, private_store: Path) -> None:
    server = start_service(private_store, access_log="true")  # log_format: text, the default
    assert httpx.get(f"{server.url}/healthz", headers={"X-Request-ID": "t-1"}, timeout=10).status_code == 200
    assert '"GET /healthz HTTP/1.1" 200 OK [t-1]' in server.log()
