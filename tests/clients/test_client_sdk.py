"""Client and AsyncClient against the fake service over loopback HTTP: how each method encodes its
request, what it returns, and which error the service's answers become."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

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
from alexnet_client.types import ClassifyResponse, ModelInfo, Prediction, SimilarResponse
from PIL import Image


class Caller:
    """Calls one SDK method on a fresh Client, or on a fresh AsyncClient in its own event loop,
    so that every test below runs against both."""

    def __init__(self, kind: str, url: str) -> None:
        self.kind = kind
        self.url = url

    def __call__(self, method: str, *args: Any, client_kwargs: dict[str, Any] | None = None, **kwargs: Any) -> Any:
        options = {"max_retries": 0, **(client_kwargs or {})}
        if self.kind == "sync":
            with Client(self.url, **options) as client:
                return getattr(client, method)(*args, **kwargs)

        async def run() -> Any:
            async with AsyncClient(self.url, **options) as client:
                return await getattr(client, method)(*args, **kwargs)

        return asyncio.run(run())


@pytest.fixture(params=["sync", "async"])
def call(request: pytest.FixtureRequest, fake_service: Any) -> Caller:
    return Caller(request.param, fake_service.url)


@pytest.fixture
def jpeg(make_image: Callable[..., bytes]) -> bytes:
    return make_image((40, 30), (200, 30, 30))


def test_classify_path_returns_typed_results(call: Caller, fake_service: Any, jpeg: bytes, tmp_path: Path) -> None:
    path = tmp_path / "red.jpg"
    path.write_bytes(jpeg)

    response = call("classify", path, top_k=3, tta="center")

    assert isinstance(response, ClassifyResponse)
    assert (response.model.name, response.model.version, response.tta) == ("alexnet-test", "v1", "center")
    (result,) = response.results
    assert (result.filename, result.width, result.height) == ("red.jpg", 40, 30)
    assert len(result.predictions) == 3
    assert isinstance(result.top, Prediction) and result.top.label == "dog"
    sent = fake_service.requests[-1]
    assert sent.form == {"top_k": ["3"], "tta": ["center"]}
    assert [(u.field, u.filename, u.content_type, u.content) for u in sent.uploads] == [
        ("files", "red.jpg", "image/jpeg", jpeg)
    ]


def test_classify_accepts_bytes_file_pil_and_str_path_in_one_request(
    call: Caller, fake_service: Any, make_image: Callable[..., bytes], tmp_path: Path
) -> None:
    png = make_image((8, 9), (10, 10, 10), "PNG")
    gif_path = tmp_path / "blue.gif"
    gif_path.write_bytes(make_image((5, 5), (0, 0, 250), "GIF"))
    pil = Image.new("RGB", (12, 7), (120, 0, 0))

    with open(gif_path, "rb") as file:
        response = call("classify", [png, io.BytesIO(png), file, pil, str(gif_path)], top_k=1)

    uploads = fake_service.requests[-1].uploads
    assert [(u.filename, u.content_type) for u in uploads] == [
        ("image-0.png", "image/png"),
        ("image-1.png", "image/png"),
        ("blue.gif", "image/gif"),
        ("image-3.png", "image/png"),
        ("blue.gif", "image/gif"),
    ]
    assert uploads[0].content == uploads[1].content == png
    assert Image.open(io.BytesIO(uploads[3].content)).getpixel((0, 0)) == (120, 0, 0)  # PNG: lossless
    assert [(r.width, r.height) for r in response.results] == [(8, 9), (8, 9), (5, 5), (12, 7), (5, 5)]
    assert fake_service.requests[-1].form == {"top_k": ["1"], "tta": ["ten_crop"]}


def test_similar_by_image_and_by_id(call: Caller, fake_service: Any, jpeg: bytes) -> None:
    by_image = call("similar", jpeg, k=2, feature="ten_crop")
    assert isinstance(by_image, SimilarResponse)
    assert by_image.feature == "ten_crop"
    assert by_image.query.id is None and by_image.query.filename == "image-0.jpg"
    assert by_image.query.predictions[0].label == "dog"
    assert [(n.id, n.label, n.source) for n in by_image.neighbors] == [(1, "cat", "cat.jpg"), (2, "dog", "dog.jpg")]
    assert by_image.neighbors[0].thumbnail_url == "/gallery/1/thumbnail"
    sent = fake_service.requests[-1]
    assert sent.form == {"k": ["2"], "feature": ["ten_crop"]} and [u.field for u in sent.uploads] == ["file"]

    by_id = call("similar", id=2)
    assert (by_id.query.id, by_id.query.label, by_id.feature, len(by_id.neighbors)) == (2, "dog", "center", 3)
    assert fake_service.requests[-1].form == {"k": ["6"], "feature": ["center"], "id": ["2"]}
    assert fake_service.requests[-1].uploads == []


def test_similar_needs_exactly_one_query(call: Caller, jpeg: bytes) -> None:
    with pytest.raises(ValueError, match="either an image or the id"):
        call("similar")
    with pytest.raises(ValueError, match="either an image or the id"):
        call("similar", jpeg, id=1)


def test_add_and_remove_with_api_key(call: Caller, fake_service: Any, jpeg: bytes) -> None:
    keyed = {"api_key": fake_service.api_key}
    added = call("add_to_index", [jpeg, jpeg], ["bird", "fish"], client_kwargs=keyed)
    assert [(item.id, item.label) for item in added.added] == [(4, "bird"), (5, "fish")]
    sent = fake_service.requests[-1]
    assert sent.form == {"labels": ["bird", "fish"]} and sent.headers["x-api-key"] == fake_service.api_key

    one_label = call("add_to_index", [jpeg, jpeg], "cat", client_kwargs=keyed)
    assert [item.label for item in one_label.added] == ["cat", "cat"]

    assert call("remove_from_index", 4, client_kwargs=keyed).deleted == 4
    assert 4 not in fake_service.gallery
    with pytest.raises(NotFoundError) as excinfo:
        call("remove_from_index", 4, client_kwargs=keyed)
    assert (excinfo.value.status_code, excinfo.value.code) == (404, "not_found")
    assert excinfo.value.message == "no gallery item 4"


def test_api_key_comes_from_the_environment(
    call: Caller, fake_service: Any, jpeg: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ALEXNET_API_KEY", fake_service.api_key)
    assert call("add_to_index", jpeg, "cat").added[0].label == "cat"


def test_label_count_must_match(call: Caller, jpeg: bytes) -> None:
    with pytest.raises(ValueError, match="2 labels for 3 images"):
        call("add_to_index", [jpeg] * 3, ["a", "b"])


@pytest.mark.parametrize(
    ("key", "error", "code"),
    [(None, AuthenticationError, "missing_api_key"), ("wrong", PermissionDeniedError, "invalid_api_key")],
)
def test_index_without_valid_key(call: Caller, jpeg: bytes, key: str | None, error: type, code: str) -> None:
    with pytest.raises(error) as excinfo:
        call("add_to_index", jpeg, "cat", client_kwargs={"api_key": key})
    assert excinfo.value.code == code


def test_health_ready_info_thumbnail(call: Caller, fake_service: Any) -> None:
    assert call("health").status == "ok"
    ready = call("ready")
    assert ready.ready and ready.status == "ready" and ready.details["model"]["version"] == "v1"

    info = call("model_info")
    assert isinstance(info, ModelInfo)
    assert (info.name, info.version, info.num_classes, info.provider, info.gallery_size) == (
        "alexnet-test",
        "v1",
        5,
        "CPUExecutionProvider",
        3,
    )
    assert info.labels == fake_service.labels and info.metrics["top1_ten_crop"] == 0.75
    assert info.manifest["schema_version"] == 1

    thumbnail = call("thumbnail", 1)
    assert thumbnail[:3] == b"\xff\xd8\xff"
    with pytest.raises(NotFoundError):
        call("thumbnail", 99)


def test_not_ready_is_an_answer_not_an_error(call: Caller, fake_service: Any) -> None:
    fake_service.ready = False
    readiness = call("ready", client_kwargs={"max_retries": 3})
    assert not readiness.ready and readiness.status == "loading"
    assert [r.path for r in fake_service.requests] == ["/readyz"]  # 503 here is not retried


def test_error_mapping(call: Caller, make_image: Callable[..., bytes]) -> None:
    with pytest.raises(BadRequestError) as excinfo:
        call("classify", b"\xff\xd8\xff not really a jpeg")
    assert excinfo.value.status_code == 400 and excinfo.value.code == "invalid_image"
    assert "cannot decode image-0.jpg" in excinfo.value.message

    with pytest.raises(UnprocessableEntityError, match="k must be between 1 and 50"):
        call("similar", id=1, k=0)
    with pytest.raises(UnprocessableEntityError, match="tta must be"):
        call("classify", make_image(), tta="five_crop")
    with pytest.raises(PayloadTooLargeError):
        call("classify", b"\xff\xd8\xff" + bytes(300 * 1024))
    with pytest.raises(NotFoundError):
        call("similar", id=404)


def test_unsupported_media_type(call: Caller, tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("hello")
    with pytest.raises(UnsupportedMediaTypeError) as excinfo:
        call("classify", notes)
    assert excinfo.value.status_code == 415 and "text/plain" in excinfo.value.message


def test_bad_inputs_fail_before_sending(call: Caller, fake_service: Any, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        call("classify", tmp_path / "missing.jpg")
    with pytest.raises(TypeError, match="unsupported image input int"):
        call("classify", [42])
    with pytest.raises(TypeError, match="binary mode"):
        call("classify", io.StringIO("text"))
    with pytest.raises(ValueError, match="at least one image"):
        call("classify", [])
    assert fake_service.requests == []


def test_base_url_from_environment_and_trailing_slash(fake_service: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALEXNET_API_URL", fake_service.url + "/")
    with Client() as client:
        assert client.base_url == fake_service.url
        assert client.health().status == "ok"
    monkeypatch.delenv("ALEXNET_API_URL")
    assert Client().base_url == "http://127.0.0.1:8000"


def test_caller_supplied_http_client_is_not_closed(fake_service: Any) -> None:
    import httpx

    with httpx.Client() as http:
        with Client(fake_service.url, http_client=http) as client:
            client.health()
        assert not http.is_closed
        with Client(fake_service.url) as own:
            own.health()
        assert own._http.is_closed
