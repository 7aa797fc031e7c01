"""The SDK and the CLI end to end against the service over loopback HTTP: the real app on the fake
model (tests/fake_serving.py, served by uvicorn in a thread), and one smoke test on the real tiny
model (``live_service`` of tests/conftest.py, ``python -m service``).
"""

from __future__ import annotations

import asyncio
import io
import json
import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from alexnet_client import (
    AsyncClient,
    AuthenticationError,
    BadRequestError,
    Client,
    NotFoundError,
    PermissionDeniedError,
    UnprocessableEntityError,
    UnsupportedMediaTypeError,
)
from alexnet_client.cli import main as cli_main
from alexnet_client.types import ClassifyResult, ModelInfo
from fake_serving import FAKE_MODEL_NAME, LIVE_SETTINGS, TEST_API_KEY, fake_app, picture
from image_helpers import encode
from PIL import Image

from model_store.store import INDEX_DIR, publish_version, read_manifest
from training.evaluate import EvalResult


@pytest.fixture
def live_url(serve: Callable[[Any], str], fake_store: Path) -> str:
    """The fast service (the app on the fake model) on loopback."""
    return serve(fake_app(fake_store, **LIVE_SETTINGS))


@pytest.fixture
def live_key() -> str:
    return TEST_API_KEY


@pytest.fixture
def client(live_url: str, live_key: str) -> Iterator[Client]:
    with Client(live_url, api_key=live_key, max_retries=2) as client:
        yield client


@pytest.fixture
def info(client: Client) -> ModelInfo:
    return client.model_info()


def check_classification(result: ClassifyResult, info: ModelInfo, top_k: int) -> None:
    assert len(result.predictions) == top_k
    probabilities = [p.probability for p in result.predictions]
    assert probabilities == sorted(probabilities, reverse=True)
    assert all(0.0 <= p <= 1.0 for p in probabilities) and sum(probabilities) <= 1.0 + 1e-5
    assert all(info.labels[p.index] == p.label for p in result.predictions)


def test_health_ready_and_model_info(client: Client, info: ModelInfo) -> None:
    assert client.health().status == "ok"
    readiness = client.ready()
    assert readiness.ready and readiness.status == "ready"
    assert info.name and info.version and info.num_classes >= 2
    assert info.feature_dim > 0 and info.provider and info.gallery_size >= 0
    assert info.precision == "fp32"  # the service's default


def test_classify_every_input_kind(client: Client, info: ModelInfo, tmp_path: Path) -> None:
    path = tmp_path / "from_path.jpg"
    path.write_bytes(encode(picture(320, 240, 1)))
    pil = picture(200, 300, 3)

    with open(path, "rb") as file:
        response = client.classify([path, encode(picture(64, 48, 2), "PNG"), file, pil], top_k=3)

    assert response.model.name == info.name and response.model.version == info.version
    assert response.tta == "ten_crop" and response.elapsed_ms > 0
    assert [(r.filename, r.width, r.height) for r in response.results] == [
        ("from_path.jpg", 320, 240),
        ("image-1.png", 64, 48),
        ("from_path.jpg", 320, 240),
        ("image-3.png", 200, 300),
    ]
    for result in response.results:
        check_classification(result, info, 3)
    assert response.results[0].predictions == response.results[2].predictions  # same bytes, same answer

    center = client.classify(path, top_k=1, tta="center")
    assert center.tta == "center" and len(center.results[0].predictions) == 1


def test_classify_many_keeps_order(live_url: str, info: ModelInfo) -> None:
    images = [encode(picture(80 + 8 * i, 60, i)) for i in range(5)]
    with Client(live_url) as client:
        one_by_one = [client.classify(image, top_k=2).results[0] for image in images]
        many = client.classify_many(images, concurrency=3, batch_size=2, top_k=2)
    assert [(r.width, r.predictions[0].label) for r in many] == [(r.width, r.predictions[0].label) for r in one_by_one]
    for got, expected in zip(many, one_by_one, strict=True):
        assert got.predictions[0].probability == pytest.approx(expected.predictions[0].probability, rel=1e-4, abs=1e-6)


def test_gallery_add_similar_thumbnail_remove(client: Client) -> None:
    before = client.model_info().gallery_size
    added = client.add_to_index([encode(picture(96, 96, 4)), encode(picture(96, 96, 5))], ["sdk-a", "sdk-b"])
    ids = [item.id for item in added.added]
    try:
        assert [item.label for item in added.added] == ["sdk-a", "sdk-b"] and len(set(ids)) == 2
        assert client.model_info().gallery_size == before + 2

        by_image = client.similar(encode(picture(96, 96, 4)), k=3)
        assert by_image.query.id is None and by_image.feature == "center"
        assert 1 <= len(by_image.neighbors) <= 3
        distances = [n.distance for n in by_image.neighbors]
        assert distances == sorted(distances)
        assert by_image.neighbors[0].id == ids[0] and by_image.neighbors[0].distance == pytest.approx(0, abs=1e-2)

        by_id = client.similar(id=ids[0], k=2)
        assert by_id.query.id == ids[0] and by_id.query.label == "sdk-a"
        assert ids[0] not in [n.id for n in by_id.neighbors] and len(by_id.neighbors) <= 2

        thumbnail = client.thumbnail(ids[1])
        assert thumbnail[:3] == b"\xff\xd8\xff"
        assert Image.open(io.BytesIO(thumbnail)).format == "JPEG"
    finally:
        removed = [client.remove_from_index(item_id).id for item_id in ids]
    assert removed == ids
    with pytest.raises(NotFoundError):
        client.remove_from_index(ids[0])
    with pytest.raises(NotFoundError):
        client.thumbnail(ids[0])
    with pytest.raises(NotFoundError):
        client.similar(id=ids[0])


def test_errors_carry_the_servers_code_and_message(live_url: str, client: Client, tmp_path: Path) -> None:
    with pytest.raises(BadRequestError) as corrupt:
        client.classify(b"\xff\xd8\xff\xe0 this is not a JPEG")
    assert corrupt.value.status_code == 400 and corrupt.value.code and corrupt.value.message

    assert corrupt.value.request_id and re.fullmatch(r"[0-9a-f]{32}", corrupt.value.request_id)

    with pytest.raises(UnprocessableEntityError) as bad_k:
        client.similar(encode(picture(64, 64, 1)), k=0)
    assert bad_k.value.code and "k" in bad_k.value.message
    assert bad_k.value.request_id not in (None, corrupt.value.request_id)
    with pytest.raises(UnprocessableEntityError):
        client.classify(encode(picture(64, 64, 1)), top_k=0)

    text = tmp_path / "notes.txt"
    text.write_text("not an image")
    with pytest.raises(UnsupportedMediaTypeError):
        client.classify(text)

    image = encode(picture(64, 64, 1))
    with Client(live_url) as anonymous, pytest.raises(AuthenticationError):
        anonymous.add_to_index(image, "x")
    with Client(live_url, api_key="wrong-key-0123456789") as wrong, pytest.raises(PermissionDeniedError):
        wrong.add_to_index(image, "x")


def test_async_client(live_url: str, live_key: str, info: ModelInfo) -> None:
    images = [encode(picture(72, 72, i)) for i in range(4)]

    async def run() -> None:
        async with AsyncClient(live_url, api_key=live_key) as client:
            assert (await client.health()).status == "ok"
            assert (await client.ready()).ready
            assert (await client.model_info()).labels == info.labels
            response = await client.classify(images[0], top_k=2, tta="center")
            check_classification(response.results[0], info, 2)
            many = await client.classify_many(images, concurrency=2)
            assert [r.width for r in many] == [72] * 4
            added = await client.add_to_index(images[1], "async-sdk")
            item_id = added.added[0].id
            try:
                similar = await client.similar(id=item_id, k=1)
                assert similar.query.label == "async-sdk"
                assert (await client.thumbnail(item_id))[:3] == b"\xff\xd8\xff"
            finally:
                assert (await client.remove_from_index(item_id)).id == item_id
            with pytest.raises(NotFoundError):
                await client.remove_from_index(item_id)

    asyncio.run(run())


def test_cli(live_url: str, capsys: pytest.CaptureFixture[str], tmp_path: Path, info: ModelInfo) -> None:
    path = tmp_path / "cli.jpg"
    path.write_bytes(encode(picture(120, 90, 6)))

    assert cli_main(["--url", live_url, "classify", str(path), "--top-k", "2", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["results"][0]["filename"] == "cli.jpg" and len(data["results"][0]["predictions"]) == 2

    assert cli_main(["--url", live_url, "info"]) == 0
    assert info.name in capsys.readouterr().out
    assert cli_main(["--url", live_url, "health"]) == 0
    capsys.readouterr()

    assert cli_main(["--url", live_url, "similar", str(path), "--k", "0"]) == 1
    assert re.search(r"\(HTTP 422 invalid_parameter, request [0-9a-f]{32}\)$", capsys.readouterr().err)


def info_table(capsys: pytest.CaptureFixture[str], url: str) -> dict[str, str]:
    """``alexnet-client info``'s table as {field: value}."""
    assert cli_main(["--url", url, "info"]) == 0
    header, *lines = capsys.readouterr().out.splitlines()
    assert header.split() == ["field", "value"]
    return dict(re.split(r"\s{2,}", line, maxsplit=1) for line in lines)


ACCURACY_FIELDS = ("top-1 accuracy", "mean per-class accuracy")


def test_cli_info_shows_the_test_accuracy(
    live_url: str, capsys: pytest.CaptureFixture[str], serve: Callable[[Any], str], fake_store: Path
) -> None:
    untested = info_table(capsys, live_url)  # the fake model is published without evaluating it
    assert untested["test split"] == "test30"
    assert untested["test accuracy"] == "not measured (published without a test evaluation)"
    assert not [name for name in untested if name.startswith(ACCURACY_FIELDS)]

    # the same model published again with the test metrics publish_run records
    source = fake_store / FAKE_MODEL_NAME / "v1"
    manifest = read_manifest(source)
    test = {
        "center": EvalResult("center", 1234, top1_error=0.419, top5_error=0.2, mean_per_class_accuracy=0.5523),
        "ten_crop": EvalResult("ten_crop", 1234, top1_error=0.3875, top5_error=0.18, mean_per_class_accuracy=0.6013),
    }
    metrics = {**manifest.metrics, "test": {tta: result.as_dict() for tta, result in test.items()}}
    version = publish_version(
        fake_store, manifest.model_copy(update={"metrics": metrics}), {f: source / f for f in manifest.files}
    )
    shutil.copytree(source / INDEX_DIR, version / INDEX_DIR)
    tested = info_table(capsys, serve(fake_app(fake_store)))
    assert tested["version"] == version.name == "v2" and tested["test split"] == "test30"
    assert "test accuracy" not in tested
    assert [(name, value) for name, value in tested.items() if name.startswith(ACCURACY_FIELDS)] == [
        ("top-1 accuracy (center)", "58.10%"),
        ("mean per-class accuracy (center)", "55.23%"),
        ("top-1 accuracy (ten_crop)", "61.25%"),
        ("mean per-class accuracy (ten_crop)", "60.13%"),
    ]


def test_the_sdk_on_the_real_model(live_service) -> None:
    """The SDK on ``python -m service`` serving the trained tiny model: its answers parse, a photo
    added is found again at distance 0, and removing it works."""
    photo = (live_service.model.data_root / "images/Faces/image_0004.jpg").read_bytes()
    with Client(live_service.url, api_key=live_service.api_key, max_retries=2) as client:
        info = client.model_info()
        assert info.labels == tuple(live_service.model.classes) and client.ready().ready
        check_classification(client.classify(photo, top_k=3).results[0], info, 3)
        added = client.add_to_index(photo, "sdk-real")
        try:
            hit = client.similar(photo, k=1).neighbors[0]
            assert (hit.id, hit.label) == (added.ids[0], "sdk-real") and hit.distance < 1e-2
        finally:
            assert client.remove_from_index(added.ids[0]).deleted
