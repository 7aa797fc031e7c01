"""Back-pressure and readiness: 503 with Retry-After when max_queue is reached or before the model
is loaded; the service keeps serving afterwards. (Under sustained load on the real model:
tests/reliability/test_load.py.)"""

from __future__ import annotations

import concurrent.futures
import socket
import threading
import time

import httpx
import pytest
import uvicorn
from fake_serving import picture
from image_helpers import encode
from service_helpers import assert_error, assert_serving

from service.app import create_app
from service.settings import Settings


@pytest.fixture(scope="module")
def face_jpeg() -> bytes:
    return encode(picture(538, 355, 11))


def test_full_queue_answers_503_with_retry_after(start_fast, face_jpeg: bytes) -> None:
    """Two images in flight (held in the model) fill max_queue = 2: the next request is refused at
    once, and once they are done the service serves again. On the fake model, whose runs a test
    can hold."""
    fast = start_fast(max_queue=2, max_files_per_request=2, batch_max_wait_ms=0, retry_after_s=3)
    files = [("files", ("a.jpg", face_jpeg, "image/jpeg")), ("files", ("b.jpg", face_jpeg, "image/jpeg"))]
    fast.model.gate.clear()
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        try:
            held = pool.submit(fast.client.post, "/classify", files=files)
            deadline = time.monotonic() + 10
            while fast.app.state.engine.in_flight < 2 and time.monotonic() < deadline:
                time.sleep(0.01)
            refused = [fast.client.post("/classify", files=files[:1]) for _ in range(3)]
        finally:
            fast.model.gate.set()
        assert held.result(30).status_code == 200
    for response in refused:
        assert "limit is 2" in assert_error(response, 503, "overloaded")["message"]
        assert response.headers["retry-after"] == "3"
    assert_serving(fast.client, face_jpeg)
    assert "alexnet_overload_rejections_total 3.0" in fast.client.get("/metrics").text


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
