"""Client and AsyncClient against the real service app on the fake model, in process (``Client``
on a ``TestClient`` as its ``http_client``; ``AsyncClient`` on ``httpx.ASGITransport``): how each
method encodes its request, what it returns, and which error the service's answers become."""

from __future__ import annotations

import dataclasses
import io
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from alexnet_client import (
    AsyncClient,
    AuthenticationError,
    BadRequestError,
    Client,
    NotFoundError,
    PayloadTooLargeError,
    PermissionDeniedError,
    UnprocessableEntityError,
    UnsupportedMediaTypeError,
)
from alexnet_client._base import read_image
from alexnet_client.types import (
    ClassifyResponse,
    ClassifyResult,
    IndexDeleteResponse,
    ModelInfo,
    Prediction,
    ReadyResponse,
    SimilarResponse,
)
from fake_serving import (
    FAKE_LABELS,
    FAKE_MODEL_NAME,
    FAKE_PROVIDER,
    GALLERY,
    LIVE_SETTINGS,
    TEST_API_KEY,
    AsyncFastService,
    FastService,
    fast_service,
)
from PIL import Image

SETTINGS = {**LIVE_SETTINGS, "max_files_per_request": 8}
BASE_URL = "http://testserver"


class Caller:
    """Calls one SDK method on a fresh Client, or on a fresh AsyncClient, both in process on one
    started app (per test), so that every test below runs against both. ``requests``: the
    (method, path, headers) of every request the SDK sent."""

    def __init__(self, kind: str, store_root: Path) -> None:
        self.kind = kind
        self.requests: list[tuple[str, str, httpx.Headers]] = []
        if kind == "sync":
            self._sync = fast_service(store_root, **SETTINGS)
            self.fast: FastService | AsyncFastService = self._sync.__enter__()
            self.fast.client.event_hooks["request"].append(self._record)
        else:
            self.fast = AsyncFastService(store_root, **SETTINGS)

            async def record(request: httpx.Request) -> None:
                self._record(request)

            self.fast.http.event_hooks["request"].append(record)

    def _record(self, request: httpx.Request) -> None:
        self.requests.append((request.method, request.url.path, request.headers))

    @property
    def app(self) -> Any:
        return self.fast.app

    def __call__(self, method: str, *args: Any, client_kwargs: dict[str, Any] | None = None, **kwargs: Any) -> Any:
        options = {"max_retries": 0, **(client_kwargs or {})}
        if isinstance(self.fast, FastService):
            with Client(BASE_URL, http_client=self.fast.client, **options) as client:
                return getattr(client, method)(*args, **kwargs)

        async def run() -> Any:
            assert isinstance(self.fast, AsyncFastService)
            async with AsyncClient(BASE_URL, http_client=self.fast.http, **options) as client:
                return await getattr(client, method)(*args, **kwargs)

        return self.fast.run(run())

    def close(self) -> None:
        if isinstance(self.fast, AsyncFastService):
            self.fast.close()
        else:
            self._sync.__exit__(None, None, None)


@pytest.fixture(params=["sync", "async"])
def call(request: pytest.FixtureRequest, fake_store: Path) -> Iterator[Caller]:
    caller = Caller(request.param, fake_store)
    yield caller
    caller.close()


@pytest.fixture
def jpeg(make_image: Callable[..., bytes]) -> bytes:
    return make_image((40, 30), (200, 30, 30))


def check_predictions(predictions: tuple[Prediction, ...], count: int) -> None:
    assert len(predictions) == count and all(isinstance(p, Prediction) for p in predictions)
    probabilities = [p.probability for p in predictions]
    assert probabilities == sorted(probabilities, reverse=True) and 0 < sum(probabilities) <= 1 + 1e-6
    assert all(FAKE_LABELS[p.index] == p.label for p in predictions)


def test_classify_path_returns_typed_results(call: Caller, jpeg: bytes, tmp_path: Path) -> None:
    path = tmp_path / "red.jpg"
    path.write_bytes(jpeg)

    response = call("classify", path, top_k=3, tta="center")

    assert isinstance(response, ClassifyResponse)
    assert (response.model.name, response.model.version, response.tta) == (FAKE_MODEL_NAME, "v1", "center")
    (result,) = response.results
    assert isinstance(result, ClassifyResult) and (result.filename, result.width, result.height) == ("red.jpg", 40, 30)
    check_predictions(result.predictions, 3)
    assert result.top == result.predictions[0] and response.elapsed_ms > 0
    assert [(method, path) for method, path, _ in call.requests] == [("POST", "/classify")]
    ten_crop = call("classify", path, top_k=5).results[0]
    assert ten_crop.predictions != result.predictions  # the tta reached the server


def test_classify_accepts_bytes_file_pil_and_str_path_in_one_request(
    call: Caller, make_image: Callable[..., bytes], tmp_path: Path
) -> None:
    png = make_image((8, 9), (10, 10, 10), "PNG")
    gif_path = tmp_path / "blue.gif"
    gif_path.write_bytes(make_image((5, 5), (0, 0, 250), "GIF"))
    pil = Image.new("RGB", (12, 7), (120, 0, 0))

    with open(gif_path, "rb") as file:
        response = call("classify", [png, io.BytesIO(png), file, pil, str(gif_path)], top_k=1)

    assert [(r.filename, r.width, r.height) for r in response.results] == [
        ("image-0.png", 8, 9),
        ("image-1.png", 8, 9),
        ("blue.gif", 5, 5),
        ("image-3.png", 12, 7),
        ("blue.gif", 5, 5),
    ]
    results = response.results
    assert results[0].predictions == results[1].predictions and results[2].predictions == results[4].predictions
    assert response.tta == "ten_crop" and all(len(r.predictions) == 1 for r in results)
    # how each input is labelled: sniffed content types, PNG (lossless) for a PIL image
    assert read_image(png, 0) == ("image-0.png", png, "image/png")
    assert read_image(gif_path)[::2] == ("blue.gif", "image/gif")
    name, content, content_type = read_image(pil, 3)
    assert (name, content_type) == ("image-3.png", "image/png")
    assert Image.open(io.BytesIO(content)).getpixel((0, 0)) == (120, 0, 0)


def test_similar_by_image_and_by_id(call: Caller) -> None:
    by_image = call("similar", GALLERY[3].png(), k=2)
    assert isinstance(by_image, SimilarResponse) and by_image.feature == "center"
    assert by_image.query.id is None and by_image.query.filename == "image-0.png" and by_image.query.label is None
    check_predictions(by_image.query.predictions or (), 5)
    nearest, second = by_image.neighbors
    assert (nearest.id, nearest.label, nearest.source) == (3, GALLERY[3].label, GALLERY[3].source)
    assert nearest.distance < 1e-3 < second.distance
    assert nearest.thumbnail_url == "/gallery/3/thumbnail"

    ten_crop = call("similar", GALLERY[3].png(), k=2, feature="ten_crop")
    assert ten_crop.feature == "ten_crop" and ten_crop.neighbors[0].distance > 0  # not the stored vector

    by_id = call("similar", id=2)
    assert (by_id.query.id, by_id.query.label, by_id.query.predictions) == (2, GALLERY[2].label, None)
    assert by_id.feature == "center" and len(by_id.neighbors) == 6 and 2 not in [n.id for n in by_id.neighbors]


def test_similar_needs_exactly_one_query(call: Caller, jpeg: bytes) -> None:
    with pytest.raises(ValueError, match="either an image or the id"):
        call("similar")
    with pytest.raises(ValueError, match="either an image or the id"):
        call("similar", jpeg, id=1)
    assert call.requests == []


def test_add_and_remove_with_api_key(call: Caller, jpeg: bytes) -> None:
    keyed = {"api_key": TEST_API_KEY}
    added = call("add_to_index", [jpeg, jpeg], ["bird", "fish"], client_kwargs=keyed)
    assert added.ids == (10, 11) and added.gallery_size == 12
    assert [(item.id, item.label, item.source) for item in added.items] == [
        (10, "bird", "upload:image-0.jpg"),
        (11, "fish", "upload:image-1.jpg"),
    ]
    assert added.added == added.items and added.items[0].thumbnail_url == "/gallery/10/thumbnail"
    assert call.requests[-1][2]["x-api-key"] == TEST_API_KEY

    one_label = call("add_to_index", [jpeg, jpeg], "cat", client_kwargs=keyed)
    assert [item.label for item in one_label.items] == ["cat", "cat"]

    assert call("remove_from_index", 10, client_kwargs=keyed) == IndexDeleteResponse(
        id=10, deleted=True, gallery_size=13
    )
    with pytest.raises(NotFoundError) as excinfo:
        call("remove_from_index", 10, client_kwargs=keyed)
    assert (excinfo.value.status_code, excinfo.value.code) == (404, "not_found")
    assert excinfo.value.message == "no gallery item has id 10"
    assert call("similar", id=11, k=1, client_kwargs=keyed).query.label == "fish"


def test_api_key_comes_from_the_environment(call: Caller, jpeg: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALEXNET_API_KEY", TEST_API_KEY)
    assert call("add_to_index", jpeg, "cat").items[0].label == "cat"


def test_label_count_must_match(call: Caller, jpeg: bytes) -> None:
    with pytest.raises(ValueError, match="2 labels for 3 images"):
        call("add_to_index", [jpeg] * 3, ["a", "b"])


@pytest.mark.parametrize(
    ("key", "error", "code"),
    [(None, AuthenticationError, "missing_api_key"), ("wrong-key-0123456789", PermissionDeniedError, "forbidden")],
)
def test_index_without_valid_key(call: Caller, jpeg: bytes, key: str | None, error: type, code: str) -> None:
    with pytest.raises(error) as excinfo:
        call("add_to_index", jpeg, "cat", client_kwargs={"api_key": key})
    assert excinfo.value.code == code


def test_health_ready_info_thumbnail(call: Caller) -> None:
    assert call("health").status == "ok"
    ready = call("ready")
    assert ready.ready and ready.status == "ready" and isinstance(ready.details, ReadyResponse)
    assert (ready.details.model.version, ready.details.provider, ready.details.gallery_size) == (
        "v1",
        FAKE_PROVIDER,
        10,
    )

    info = call("model_info")
    assert isinstance(info, ModelInfo)
    assert (info.name, info.version, info.num_classes, info.provider, info.gallery_size, info.precision) == (
        FAKE_MODEL_NAME,
        "v1",
        5,
        FAKE_PROVIDER,
        10,
        "fp32",
    )
    assert info.labels == FAKE_LABELS and info.metrics["test_split"] == "test30" and info.variant == "fake"
    assert info.manifest.schema_version == 1 and info.feature_dim == 4096 and info.preprocessing["crop"] == 224
    assert info.created and set(info.manifest.files) == {"model.onnx", "mean.npy"}

    thumbnail = call("thumbnail", 1)
    assert thumbnail[:3] == b"\xff\xd8\xff"
    with pytest.raises(NotFoundError):
        call("thumbnail", 99)


def test_not_ready_is_an_answer_not_an_error(call: Caller) -> None:
    call.app.state.engine.ready = False
    readiness = call("ready", client_kwargs={"max_retries": 3})
    assert (readiness.ready, readiness.status, readiness.details) == (False, "not_ready", None)
    assert readiness.message and "not loaded" in readiness.message
    assert [path for _, path, _ in call.requests] == ["/readyz"]  # 503 here is not retried


def test_error_mapping(call: Caller, make_image: Callable[..., bytes]) -> None:
    with pytest.raises(BadRequestError) as excinfo:
        call("classify", b"\xff\xd8\xff not really a jpeg")
    assert excinfo.value.status_code == 400 and excinfo.value.code == "bad_image"
    assert "image-0.jpg" in excinfo.value.message

    with pytest.raises(UnprocessableEntityError, match="k must be between 1 and 10"):
        call("similar", id=1, k=0)
    with pytest.raises(UnprocessableEntityError, match="tta"):
        call("classify", make_image(), tta="five_crop")
    with pytest.raises(PayloadTooLargeError):
        call("classify", b"\xff\xd8\xff" + bytes(LIVE_SETTINGS["max_upload_bytes"]))
    with pytest.raises(NotFoundError):
        call("similar", id=404)


def test_unsupported_media_type(call: Caller, tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("hello")
    with pytest.raises(UnsupportedMediaTypeError) as excinfo:
        call("classify", notes)
    assert excinfo.value.status_code == 415 and "text/plain" in excinfo.value.message


def test_bad_inputs_fail_before_sending(call: Caller, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        call("classify", tmp_path / "missing.jpg")
    with pytest.raises(TypeError, match="unsupported image input int"):
        call("classify", [42])
    with pytest.raises(TypeError, match="binary mode"):
        call("classify", io.StringIO("text"))
    with pytest.raises(ValueError, match="at least one image"):
        call("classify", [])
    assert call.requests == []


def test_results_are_the_services_json(fast: FastService, jpeg: bytes) -> None:
    """``dataclasses.asdict`` of a result is the JSON the service sent (nothing lost or renamed)."""

    def plain(result: Any) -> Any:
        return json.loads(json.dumps(dataclasses.asdict(result)))  # tuples as lists

    upload = {"files": {"files": ("image-0.jpg", jpeg, "image/jpeg")}, "data": {"top_k": "2"}}
    with Client(BASE_URL, http_client=fast.client, api_key=TEST_API_KEY) as client:
        assert plain(client.ready().details) == fast.client.get("/readyz").json()
        assert plain(client.model_info()) == fast.client.get("/v1/models").json()["models"][0]
        similar = fast.client.post("/similar", data={"id": "4", "k": "3"}).json()
        assert plain(client.similar(id=4, k=3)) == {
            **similar,
            "elapsed_ms": pytest.approx(similar["elapsed_ms"], abs=1e3),
        }
        classified = fast.client.post("/classify", **upload).json()
        assert {**plain(client.classify(jpeg, top_k=2)), "elapsed_ms": 0} == {**classified, "elapsed_ms": 0}
        assert plain(client.remove_from_index(0)) == {"id": 0, "deleted": True, "gallery_size": 9}


def test_base_url_from_environment_and_trailing_slash(fast: FastService, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALEXNET_API_URL", BASE_URL + "/")
    with Client(http_client=fast.client) as client:
        assert client.base_url == BASE_URL
        assert client.health().status == "ok"
    monkeypatch.delenv("ALEXNET_API_URL")
    assert Client().base_url == "http://127.0.0.1:8000"


def test_caller_supplied_http_client_is_not_closed(fast: FastService) -> None:
    with Client(BASE_URL, http_client=fast.client) as client:
        client.health()
    assert not fast.client.is_closed
    with Client(BASE_URL) as own:
        pass
    assert own._http.is_closed
