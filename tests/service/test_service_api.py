"""Every endpoint of the service app on the fake model (tests/fake_serving.py: the real routes,
middleware, engine and FAISS gallery; in process). What the trained model computes is checked on
the real server in test_service_parity.py."""

from __future__ import annotations

import concurrent.futures
import io
import re

import httpx
import pytest
from fake_serving import FAKE_LABELS, FAKE_MODEL_NAME, FAKE_PROVIDER, GALLERY, FastService, picture
from image_helpers import encode
from PIL import Image

from model_store.manifest import Manifest


@pytest.fixture
def client(fast: FastService) -> httpx.Client:
    return fast.client


@pytest.fixture(scope="module")
def face_jpeg() -> bytes:
    return encode(picture(538, 355, 11))


@pytest.fixture(scope="module")
def watch_jpeg() -> bytes:
    return encode(picture(300, 242, 12))


def test_health_ready_models_and_docs(client: httpx.Client) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz").json()
    assert ready["status"] == "ready" and ready["provider"] == FAKE_PROVIDER and ready["gallery_size"] == len(GALLERY)
    assert ready["model"] == {"name": FAKE_MODEL_NAME, "version": "v1"} and ready["inference_workers"] == 1
    (info,) = client.get("/v1/models").json()["models"]
    assert info["name"] == FAKE_MODEL_NAME and info["version"] == "v1"
    assert info["provider"] == FAKE_PROVIDER and info["gallery_size"] == len(GALLERY)
    manifest = Manifest.model_validate(info["manifest"])
    assert manifest.labels == list(FAKE_LABELS) and "model.onnx" in manifest.files
    assert client.get("/docs").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/classify", "/similar", "/index", "/index/{item_id}", "/gallery/{item_id}/thumbnail"} <= set(paths)
    assert "ErrorResponse" in str(paths["/classify"]["post"]["responses"]["413"])


def test_classify_several_files_ten_crop(client: httpx.Client, face_jpeg: bytes, watch_jpeg: bytes) -> None:
    files = [("files", ("face.jpg", face_jpeg, "image/jpeg")), ("files", ("watch.jpg", watch_jpeg, "image/jpeg"))]
    body = client.post("/classify", files=files).json()
    assert body["model"] == {"name": FAKE_MODEL_NAME, "version": "v1"} and body["tta"] == "ten_crop"
    face, watch = body["results"]
    assert (face["filename"], face["width"], face["height"]) == ("face.jpg", 538, 355)
    assert (watch["filename"], watch["width"], watch["height"]) == ("watch.jpg", 300, 242)
    probabilities = [p["probability"] for p in face["predictions"]]
    assert len(probabilities) == 5 and probabilities == sorted(probabilities, reverse=True)
    assert abs(sum(probabilities) - 1) < 1e-6  # top 5 of 5 classes
    assert {p["label"] for p in face["predictions"]} == set(FAKE_LABELS)
    assert face["predictions"] != watch["predictions"] and body["elapsed_ms"] > 0


def test_classify_top_k_and_tta_as_form_or_query(client: httpx.Client, face_jpeg: bytes) -> None:
    files = {"files": ("face.jpg", face_jpeg, "image/jpeg")}
    by_form = client.post("/classify", files=files, data={"top_k": "2", "tta": "center"}).json()
    by_query = client.post("/classify", files=files, params={"top_k": 2, "tta": "center"}).json()
    assert by_form["tta"] == by_query["tta"] == "center"
    assert len(by_form["results"][0]["predictions"]) == 2
    assert by_form["results"][0]["predictions"] == by_query["results"][0]["predictions"]
    ten = client.post("/classify", files=files, data={"top_k": "2"}).json()
    assert ten["results"][0]["predictions"] != by_form["results"][0]["predictions"]


def test_similar_by_file(client: httpx.Client, face_jpeg: bytes) -> None:
    body = client.post("/similar", files={"file": ("q.jpg", face_jpeg, "image/jpeg")}, data={"k": "3"}).json()
    assert body["feature"] == "center" and body["query"]["id"] is None and body["query"]["filename"] == "q.jpg"
    assert body["query"]["label"] is None and len(body["query"]["predictions"]) == 5
    distances = [n["distance"] for n in body["neighbors"]]
    assert len(distances) == 3 and distances == sorted(distances) and distances[0] > 0
    for neighbor in body["neighbors"]:
        assert neighbor["thumbnail_url"] == f"/gallery/{neighbor['id']}/thumbnail"
        assert neighbor["label"] in FAKE_LABELS
    ten = client.post("/similar", files={"file": ("q.jpg", face_jpeg, "image/jpeg")}, params={"feature": "ten_crop"})
    assert ten.json()["feature"] == "ten_crop" and len(ten.json()["neighbors"]) == 6


def test_similar_to_a_gallery_image_finds_it_at_distance_zero(client: httpx.Client) -> None:
    item = GALLERY[5]
    body = client.post("/similar", files={"file": ("l.png", item.png())}).json()
    nearest = body["neighbors"][0]
    assert nearest["source"] == item.source and nearest["label"] == item.label and nearest["distance"] < 1e-2


def test_similar_by_id_excludes_the_item(client: httpx.Client) -> None:
    neighbors = client.post("/similar", data={"id": "1", "k": "10"}).json()
    assert neighbors["query"] == {"id": 1, "filename": None, "label": GALLERY[1].label, "predictions": None}
    ids = [n["id"] for n in neighbors["neighbors"]]
    assert 1 not in ids and len(ids) == len(GALLERY) - 1  # all the others
    by_query = client.post("/similar", params={"id": 1, "k": 10}, data={}).json()
    assert [n["id"] for n in by_query["neighbors"]] == ids


def test_thumbnail(client: httpx.Client) -> None:
    response = client.get("/gallery/0/thumbnail")
    assert response.status_code == 200 and response.headers["content-type"] == "image/jpeg"
    with Image.open(io.BytesIO(response.content)) as thumb:
        assert max(thumb.size) == 96


def test_concurrent_requests_are_batched_and_metrics_report_it(
    client: httpx.Client, face_jpeg: bytes, watch_jpeg: bytes
) -> None:
    def classify(jpeg: bytes) -> int:
        return client.post("/classify", files={"files": ("x.jpg", jpeg)}, data={"tta": "ten_crop"}).status_code

    before = metric(client, "alexnet_inference_batch_images_count")
    before_sum = metric(client, "alexnet_inference_batch_images_sum")
    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        assert list(pool.map(classify, [face_jpeg, watch_jpeg] * 3)) == [200] * 6
    runs = metric(client, "alexnet_inference_batch_images_count") - before
    images = metric(client, "alexnet_inference_batch_images_sum") - before_sum
    assert images == 6 and runs < 6, f"{images} images in {runs} runs: no batching"
    text = client.get("/metrics").text
    assert 'alexnet_http_requests_total{method="POST",route="/classify",status="200"}' in text
    assert 'alexnet_http_request_duration_seconds_bucket{le="+Inf",method="POST",route="/classify"}' in text
    assert "alexnet_batch_queue_depth 0.0" in text and "alexnet_images_in_flight 0.0" in text
    assert re.search(r"alexnet_gallery_items \d+\.0", text)


def metric(client: httpx.Client, name: str) -> float:
    match = re.search(rf"^{name} (\S+)$", client.get("/metrics").text, re.MULTILINE)
    assert match, name
    return float(match.group(1))


def requests_counted(client: httpx.Client, route: str) -> float:
    """GET requests answered 200 (404 for "unmatched") that /metrics counts under ``route``."""
    status = "404" if route == "unmatched" else "200"
    pattern = rf'^alexnet_http_requests_total{{method="GET",route="{re.escape(route)}",status="{status}"}} (\S+)$'
    match = re.search(pattern, client.get("/metrics").text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def test_metrics_count_the_docs_under_their_routes(client: httpx.Client) -> None:
    routes = {"/docs": "/docs", "/openapi.json": "/openapi.json"}
    routes |= {"/docs/assets/swagger-ui.css": "/docs/assets/{name}", "/no/such/route": "unmatched"}
    before = {route: requests_counted(client, route) for route in routes.values()}
    for path in routes:
        client.get(path)
    after = {route: requests_counted(client, route) for route in routes.values()}
    assert {route: after[route] - before[route] for route in after} == {
        "/docs": 1, "/openapi.json": 1, "/docs/assets/{name}": 1, "unmatched": 1
    }  # fmt: skip


def test_every_answer_has_a_request_id(client: httpx.Client) -> None:
    generated = re.compile(r"[0-9a-f]{32}")
    ids = [client.get("/healthz").headers["x-request-id"] for _ in range(2)]
    assert all(generated.fullmatch(rid) for rid in ids) and ids[0] != ids[1]
    assert client.get("/readyz", headers={"X-Request-ID": "trace-7f:a.b_c"}).headers["x-request-id"] == "trace-7f:a.b_c"
    for unusable in (b"has space", b"x" * 129, b"\xe9t\xe9", b""):  # replaced, not echoed
        answer = client.get("/healthz", headers={"X-Request-ID": unusable})
        assert generated.fullmatch(answer.headers["x-request-id"]), unusable
    # answers made before any route runs: the body limit, an unknown route
    too_big = client.post(
        "/classify",
        content=b"x" * (4 * 1024 * 1024),
        headers={"Content-Type": "multipart/form-data; boundary=x", "X-Request-ID": "big-1"},
    )
    assert too_big.status_code == 413 and too_big.headers["x-request-id"] == "big-1"
    assert client.get("/nowhere", headers={"X-Request-ID": "lost-2"}).headers["x-request-id"] == "lost-2"
