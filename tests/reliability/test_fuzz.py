"""Fuzzing the real server (``python -m service`` on loopback): a corpus of malformed images on every
upload route, then schemathesis against the service's own OpenAPI schema (every route, multipart
included). Wanted: no 5xx, no hang (every request has a timeout), every error the documented JSON
error, and the server still serving afterwards.

Bigger runs for docs/reliability.md: ``FUZZ_MAX_EXAMPLES=300 FUZZ_SEED=<n> pytest -s -k schemathesis
tests/reliability/test_fuzz.py`` (the tally of answers by status is printed).
"""

from __future__ import annotations

import collections
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
from malformed_images import LIMIT_PIXELS, corpus
from PIL import Image
from reliability_helpers import API_KEY, KEY, assert_error, rss_mib

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parents[1]
FUZZ_SETTINGS = {"api_key": API_KEY, "max_pixels": LIMIT_PIXELS, "max_upload_bytes": 8 * 1024 * 1024}
UPLOAD_ROUTES = (  # route, file field, form fields, headers
    ("/classify", "files", {"tta": "center"}, {}),
    ("/similar", "file", {}, {}),
    ("/index", "files", {"labels": "fuzz"}, KEY),
)
REQUEST_TIMEOUT_S = 30
RSS_GROWTH_LIMIT_MIB = 300  # the under-the-limit 19-megapixel image is really decoded (three times)


def hostile_multipart(jpeg: bytes) -> dict[str, dict]:
    """Request bodies that attack the form parser rather than the image decoder."""
    image = ("a.jpg", jpeg, "image/jpeg")
    raw = {"headers": {"content-type": "multipart/form-data; boundary=xx"}}
    return {
        "1500 fields": {"data": {f"f{i}": "x" for i in range(1500)}, "files": {"files": image}},
        "1200 files": {"files": [("files", (f"{i}.jpg", b"x", "image/jpeg")) for i in range(1200)]},
        "2 MB text field": {"data": {"tta": "a" * (2 << 20)}, "files": {"files": image}},
        "no boundary": {"content": b"--xx\r\n", "headers": {"content-type": "multipart/form-data"}},
        "no closing boundary": {"content": b"--xx\r\nContent-Disposition: form-data; name=files\r\n\r\nab", **raw},
        "100 kB file name": {
            "content": b'--xx\r\nContent-Disposition: form-data; name="files"; filename="'
            + b"a" * 100_000
            + b'"\r\n\r\nabc\r\n--xx--\r\n',
            **raw,
        },  # fmt: skip
        "files as text fields": {"data": {"files": ["abc", "def"]}},
        "control characters in the file name": {"files": {"files": ("\u202e\x00../../x.jpg", b"zz", "image/jpeg")}},
        "top_k beyond int64": {"params": {"top_k": "9" * 30}, "files": {"files": image}},
    }


def test_malformed_images_get_documented_answers(start_service, private_store: Path, photo_jpeg: bytes) -> None:
    server = start_service(private_store, **FUZZ_SETTINGS)
    images = corpus(photo_jpeg)
    rss_start = rss_mib(server.process.pid)
    tally: collections.Counter[int] = collections.Counter()
    with httpx.Client(base_url=server.url, timeout=REQUEST_TIMEOUT_S) as http:
        size = http.get("/readyz").json()["gallery_size"]
        added: list[int] = []
        for name, (data, expected) in images.items():
            for route, field, form, headers in UPLOAD_ROUTES:
                part = (name, data, "application/octet-stream")  # the bytes decide, not the declared type
                response = http.post(route, files={field: part}, data=form, headers=headers)
                tally[response.status_code] += 1
                if expected == 200:
                    assert response.status_code == 200, (route, name, response.text)
                else:
                    assert name in assert_error(response, expected)["message"], (route, name)
                if route == "/index" and response.status_code == 200:
                    added += response.json()["ids"]
        for item_id in added:  # each accepted image got a real JPEG thumbnail
            thumbnail = http.get(f"/gallery/{item_id}/thumbnail")
            assert thumbnail.headers["content-type"] == "image/jpeg"
            assert Image.open(io.BytesIO(thumbnail.content)).format == "JPEG"
        # one bad file fails the whole request, names it, and adds nothing
        bomb = images["bomb-20000x20000.png"][0]
        mixed = [("files", ("good.jpg", photo_jpeg, "image/jpeg")), ("files", ("bomb.png", bomb, "image/png"))]
        error = assert_error(
            http.post("/index", files=mixed, data={"labels": "x"}, headers=KEY), 413, "image_too_large"
        )
        assert "bomb.png" in error["message"]
        assert http.get("/readyz").json()["gallery_size"] == size + len(added)
        for name, request in hostile_multipart(photo_jpeg).items():
            response = http.post("/classify", **request)
            tally[response.status_code] += 1
            assert response.status_code in (400, 413, 415, 422), (name, response.text)
            assert_error(response, response.status_code)  # the form parser's limits, answered as JSON
        assert http.post("/classify", files={"files": ("ok.jpg", photo_jpeg, "image/jpeg")}).status_code == 200
    growth = rss_mib(server.process.pid) - rss_start
    answers = dict(sorted(tally.items()))
    print(f"\nmalformed corpus: {len(images)} files x {len(UPLOAD_ROUTES)} routes, answers {answers}, "
          f"server RSS {rss_start:.0f} MiB -> +{growth:.0f} MiB")  # fmt: skip
    assert growth < RSS_GROWTH_LIMIT_MIB
    assert server.process.poll() is None and "Traceback" not in server.log()


def answers_by_status(ndjson: Path) -> tuple[collections.Counter[int], collections.Counter[tuple[str, int]]]:
    """Statuses of the requests recorded in a schemathesis NDJSON report: overall and per operation."""
    overall: collections.Counter[int] = collections.Counter()
    per_operation: collections.Counter[tuple[str, int]] = collections.Counter()
    for line in ndjson.read_text().splitlines():
        scenario = json.loads(line).get("ScenarioFinished")
        if not scenario:
            continue
        for interaction in scenario["recorder"].get("interactions", {}).values():
            status = interaction["response"]["status_code"] if interaction.get("response") else 0  # 0: no answer
            overall[status] += 1
            per_operation[scenario["recorder"]["label"], status] += 1
    return overall, per_operation


def test_schemathesis_finds_no_failure(start_service, private_store: Path, tmp_path: Path) -> None:
    server = start_service(private_store, **FUZZ_SETTINGS)
    max_examples = os.environ.get("FUZZ_MAX_EXAMPLES", "15")
    report = tmp_path / "schemathesis.ndjson"
    command = [
        sys.executable, "-m", "schemathesis.cli", "--config-file", str(HERE / "schemathesis.toml"),
        "run", f"{server.url}/openapi.json",
        # every check; positive_data_acceptance is left out: a schema-valid upload is rightly refused
        # when its bytes are not an image, which the schema ("binary") cannot say
        "--checks", "all", "--exclude-checks", "positive_data_acceptance",
        "--header", f"X-API-Key: {API_KEY}",
        "--max-examples", max_examples, "--seed", os.environ.get("FUZZ_SEED", "2012"),
        "--request-timeout", str(REQUEST_TIMEOUT_S), "--workers", "1",
        "--generation-database", "none", "--no-color", "--report", "ndjson", "--report-ndjson-path", str(report),
    ]  # fmt: skip
    env = os.environ | {"SCHEMATHESIS_HOOKS": str(HERE / "schemathesis_hooks.py")}
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    overall, per_operation = answers_by_status(report)
    print(f"\nschemathesis --max-examples {max_examples}: {sum(overall.values())} requests, "
          f"by status {dict(sorted(overall.items()))}")  # fmt: skip
    for (operation, status), count in sorted(per_operation.items()):
        print(f"  {operation:34s} {status}: {count}")
    assert sum(overall.values()) > 100 and 0 not in overall
    assert not [status for status in overall if status >= 500], overall
    with httpx.Client(base_url=server.url, timeout=REQUEST_TIMEOUT_S) as http:
        assert http.get("/readyz").status_code == 200
    assert server.process.poll() is None and "Traceback" not in server.log()
