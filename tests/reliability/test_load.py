"""A few seconds of benchmarks/load_test.py against the real server: below max_queue nothing fails;
above it the surplus gets 503s that carry Retry-After, never another 5xx, and the server's resident
memory stays bounded. Behaviour, not timings (those are in docs/reliability.md)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from load_test import require_loopback, run_load  # noqa: E402

MAX_QUEUE = 4
RSS_GROWTH_LIMIT_MIB = 200


def test_back_pressure_under_sustained_load(start_service, tiny_model, photo_jpeg: bytes) -> None:
    server = start_service(tiny_model.store_root, max_queue=MAX_QUEUE, max_files_per_request=MAX_QUEUE)
    report = asyncio.run(
        run_load(server.url, server.process.pid, below=MAX_QUEUE, above=4 * MAX_QUEUE, seconds=1.5,
                 image=photo_jpeg, tta="center")
    )  # fmt: skip
    below, above = report.phases
    assert below.requests > 0 and below.statuses == {200: below.requests}, below.statuses  # zero failures
    assert above.statuses[200] > 0 and above.statuses[503] > 0, above.statuses
    assert above.failed == 0 and set(above.statuses) == {200, 503}, above.statuses  # no other 5xx, no 4xx
    assert above.without_retry_after == 0
    assert report.rss_peak - report.rss_start < RSS_GROWTH_LIMIT_MIB, report
    with httpx.Client(base_url=server.url, timeout=30) as http:
        assert http.get("/readyz").status_code == 200
        metrics = http.get("/metrics").text
        assert "alexnet_overload_rejections_total" in metrics and "alexnet_images_in_flight 0.0" in metrics
    assert "Traceback" not in server.log()


def test_the_load_test_refuses_other_addresses() -> None:
    for url in ("http://10.0.0.1:8000", "http://example.com", "http://192.168.1.2"):
        try:
            require_loopback(url)
        except ValueError:
            continue
        raise AssertionError(f"{url} was accepted")
    assert require_loopback("http://127.0.0.1:8000/") == "http://127.0.0.1:8000"
    assert require_loopback("http://[::1]:8000") == "http://[::1]:8000"
