"""Back-pressure and readiness: 503 with Retry-After when max_queue is reached or before the model
is loaded; the service keeps serving afterwards."""

from __future__ import annotations

import concurrent.futures
import socket
import threading
import time

import httpx
import uvicorn
from service_helpers import assert_error, assert_serving

from service.app import create_app
from service.settings import Settings


def test_full_queue_answers_503_with_retry_after(start_service, tiny_model, face_jpeg: bytes) -> None:
    server = start_service(
        tiny_model.store_root, max_queue=2, max_files_per_request=2, batch_max_wait_ms=0, retry_after_s=3
    )
    files = [("files", ("a.jpg", face_jpeg, "image/jpeg")), ("files", ("b.jpg", face_jpeg, "image/jpeg"))]

    def classify(_: int) -> httpx.Response:
        with httpx.Client(base_url=server.url, timeout=120) as http:
            return http.post("/classify", files=files)

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(classify, range(8)))
    statuses = sorted(r.status_code for r in responses)
    assert 200 in statuses and 503 in statuses and set(statuses) == {200, 503}, statuses
    for response in responses:
        if response.status_code == 503:
            assert "limit is 2" in assert_error(response, 503, "overloaded")["message"]
            assert response.headers["retry-after"] == "3"
    with httpx.Client(base_url=server.url, timeout=60) as http:
        assert_serving(http, face_jpeg)
        assert "alexnet_overload_rejections_total" in http.get("/metrics").text


def test_not_ready_until_the_lifespan_has_loaded_the_model(tmp_path, face_jpeg: bytes) -> None:
    app = create_app(Settings(store_root=tmp_path, retry_after_s=2))
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        server = uvicorn.Server(uvicorn.Config(app, lifespan="off", log_level="warning"))  # nothing gets loaded
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.01)
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{sock.getsockname()[1]}", timeout=10) as http:
                assert http.get("/healthz").status_code == 200
                response = http.get("/readyz")
                assert_error(response, 503, "not_ready")
                assert response.headers["retry-after"] == "2"
                assert_error(http.post("/classify", files={"files": ("a.jpg", face_jpeg)}), 503, "not_ready")
                assert_error(http.get("/gallery/0/thumbnail"), 503, "not_ready")
        finally:
            server.should_exit = True
            thread.join(10)
