"""ALEXNET_VECTOR_BACKEND=milvus: the gallery in a real Milvus (milvus-lite, a folder under tmp_path)
answers what the FAISS gallery answers, and its changes survive a restart.

The service tests start ``python -m service`` on loopback as the other live tests do; the first
ones check the collection code in process against FAISS's exact search on synthetic vectors."""

from __future__ import annotations

import asyncio
import io
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image
from service_helpers import assert_error

from model_store.gallery import Gallery, UnknownItemError, make_thumbnail
from service.errors import ServiceError

REPO_ROOT = Path(__file__).resolve().parents[2]
API_KEY = "milvus-test-key-0123456789"
DIM = 64


@pytest.fixture(scope="module")
def milvus():
    """pymilvus, and milvus-lite behind it (the `milvus` extra)."""
    pytest.importorskip("milvus_lite", reason="milvus-lite is not installed (pip install -e '.[milvus]')")
    return pytest.importorskip("pymilvus", reason="pymilvus is not installed (pip install -e '.[milvus]')")


def synthetic_gallery(directory: Path, count: int = 300, seed: int = 0) -> tuple[Gallery, np.ndarray]:
    rng = np.random.default_rng(seed)
    vectors = rng.normal(size=(count, DIM)).astype(np.float32)
    thumb = make_thumbnail(Image.new("RGB", (120, 80), (200, 30, 30)))
    gallery = Gallery.empty(directory, DIM)
    gallery.add(vectors, [f"class{i % 7}" for i in range(count)], [f"img/{i}.jpg" for i in range(count)],
                [thumb] * count)  # fmt: skip
    if count > 5:
        gallery.remove(5)  # a hole in the ids, as a real gallery has after a delete
    return gallery, vectors


def test_the_default_service_does_not_import_pymilvus() -> None:
    code = (
        "import sys, service.app, service.serving, service.retrieval;"
        "service.app.create_app(service.app.Settings());"
        "assert 'pymilvus' not in sys.modules and 'service.milvus_retrieval' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, check=True, timeout=60)


def test_seeded_collection_searches_like_faiss(milvus, tmp_path: Path) -> None:
    from service.milvus_retrieval import MilvusRetrieval, seed_collection

    gallery, vectors = synthetic_gallery(tmp_path / "index")
    client = milvus.MilvusClient(str(tmp_path / "lite.db"))
    seed_collection(client, "gallery", gallery)
    seed_collection(client, "gallery", gallery)  # a second seeder (another replica) loses the rename quietly
    assert client.list_collections() == ["gallery"]
    client.load_collection("gallery")
    retrieval = MilvusRetrieval(client, "gallery", DIM)
    assert len(retrieval) == len(gallery) == 299

    queries = np.random.default_rng(1).normal(size=(4, DIM)).astype(np.float32)
    for query, exclude in [(queries[0], ()), (queries[1], (3, 4)), (vectors[7], (7,)), (queries[3], ())]:
        (expected,) = gallery.search(query[None, :], 10, exclude)
        got = asyncio.run(retrieval.search(query, 10, exclude))
        assert [h.item.id for h in got] == [h.item.id for h in expected]
        assert [(h.item.id, h.item.label, h.item.source) for h in got] == [
            (h.item.id, h.item.label, h.item.source) for h in expected
        ]
        np.testing.assert_allclose([h.distance for h in got], [h.distance for h in expected], rtol=1e-5, atol=1e-4)

    item = gallery.get(8)
    assert retrieval.item(8).label == item.label and retrieval.item(8).source == item.source
    np.testing.assert_array_equal(retrieval.vector(8), vectors[8])
    assert retrieval.thumbnail(8) == gallery.thumbnail_path(8).read_bytes()
    for missing in (5, 10_000):
        with pytest.raises(UnknownItemError):
            retrieval.item(missing)


def test_milvus_settings() -> None:
    from pydantic import ValidationError

    from service.settings import Settings

    assert Settings().vector_backend == "faiss"
    for uri in ("gallery.db", "/var/lib/alexnet/gallery.db", "http://milvus:19530", "https://in01.example.com"):
        assert Settings(vector_backend="milvus", milvus_uri=uri).milvus_uri == uri
    assert Settings(milvus_token="", milvus_collection="").milvus_token is None
    for bad in ({"milvus_uri": "gallery"}, {"milvus_uri": "ftp://host"}, {"milvus_collection": "1st"},
                {"milvus_collection": "has-dash"}, {"vector_backend": "annoy"}):  # fmt: skip
        with pytest.raises(ValidationError):
            Settings(**bad)


def test_collection_names_and_an_unreachable_milvus(milvus, tiny_model, tmp_path: Path) -> None:
    from milvus_lite import server_manager_instance

    from model_store.store import load_version
    from service.milvus_retrieval import MilvusRetrieval, collection_name, seed_collection
    from service.settings import Settings

    version = load_version(tiny_model.store_root, tiny_model.name)
    assert collection_name(Settings(), version) == "alexnet_tiny_v1"
    assert collection_name(Settings(milvus_collection="mine"), version) == "mine"

    gallery, _ = synthetic_gallery(tmp_path / "index", count=3)
    lite = str(tmp_path / "lite.db")
    client = milvus.MilvusClient(lite)
    seed_collection(client, "gallery", gallery)
    client.load_collection("gallery")
    retrieval = MilvusRetrieval(client, "gallery", DIM, retry_after_s=7)
    assert retrieval.item(0).label == "class0"
    server_manager_instance.release_server(lite)  # the database goes away under a running service
    with pytest.raises(ServiceError) as failed:
        retrieval.item(0)
    assert (failed.value.status, failed.value.code) == (503, "vector_db_unavailable")
    assert failed.value.headers == {"Retry-After": "7"}


def test_the_milvus_gallery_is_the_faiss_gallery_and_changes_survive_a_restart(
    milvus, start_service, private_store: Path, tmp_path: Path, watch_jpeg: bytes, face_jpeg: bytes
) -> None:
    key = {"X-API-Key": API_KEY}
    lite = tmp_path / "gallery.db"
    settings = {"api_key": API_KEY, "vector_backend": "milvus", "milvus_uri": lite}
    faiss_server = start_service(private_store)
    milvus_server = start_service(private_store, **settings)
    assert "seeded milvus collection alexnet_tiny_v1" in milvus_server.log()
    with (
        httpx.Client(base_url=faiss_server.url, timeout=60) as faiss_http,
        httpx.Client(base_url=milvus_server.url, timeout=60) as http,
    ):
        size = faiss_http.get("/readyz").json()["gallery_size"]
        assert http.get("/readyz").json()["gallery_size"] == size > 10

        def similar(client: httpx.Client, **form: str) -> list[dict]:
            files = {"file": ("face.jpg", face_jpeg, "image/jpeg")} if "id" not in form else None
            response = client.post("/similar", files=files, data={"k": "10", **form})
            assert response.status_code == 200, response.text
            return response.json()["neighbors"]

        for form in ({}, {"feature": "ten_crop"}, {"id": "0"}, {"id": str(size - 1)}):
            expected, got = similar(faiss_http, **form), similar(http, **form)
            assert [n["id"] for n in got] == [n["id"] for n in expected], form
            for theirs, ours in zip(expected, got, strict=True):
                assert {**ours, "distance": 0} == {**theirs, "distance": 0}  # label, source, thumbnail_url
                assert ours["distance"] == pytest.approx(theirs["distance"], rel=1e-5, abs=1e-4)
        for item_id in (0, size - 1):
            thumb = http.get(f"/gallery/{item_id}/thumbnail")
            assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
            assert thumb.content == faiss_http.get(f"/gallery/{item_id}/thumbnail").content

        added = http.post("/index", files={"files": ("watch.jpg", watch_jpeg, "image/jpeg")},
                          data={"labels": "my_watch"}, headers=key)  # fmt: skip
        assert added.status_code == 200, added.text
        (new_id,) = added.json()["ids"]
        assert new_id == size and added.json()["gallery_size"] == size + 1
        deleted = http.delete("/index/0", headers=key)
        assert deleted.json() == {"id": 0, "deleted": True, "gallery_size": size}
        assert_error(http.delete("/index/0", headers=key), 404, "not_found")
    milvus_server.stop()
    assert faiss_server.process.poll() is None

    milvus_server = start_service(private_store, **settings)
    assert "seeded" not in milvus_server.log()  # its own log: the collection was there
    with httpx.Client(base_url=milvus_server.url, timeout=60) as http:
        assert http.get("/readyz").json()["gallery_size"] == size
        response = http.post("/similar", files={"file": ("q.jpg", watch_jpeg, "image/jpeg")}, data={"k": "1"})
        (nearest,) = response.json()["neighbors"]
        assert (nearest["id"], nearest["label"], nearest["source"]) == (new_id, "my_watch", "upload:watch.jpg")
        assert nearest["distance"] < 1e-2
        with Image.open(io.BytesIO(http.get(nearest["thumbnail_url"]).content)) as image:
            assert max(image.size) == 96
        assert_error(http.post("/similar", data={"id": "0"}), 404, "not_found")
        assert_error(http.get("/gallery/0/thumbnail"), 404, "not_found")
        neighbours = http.post("/similar", data={"id": "1", "k": "10"}).json()["neighbors"]
        assert 0 not in [n["id"] for n in neighbours] and 1 not in [n["id"] for n in neighbours]
        again = http.post("/index", files={"files": ("face.jpg", face_jpeg, "image/jpeg")},
                          data={"labels": "x"}, headers=key)  # fmt: skip
        assert again.json()["ids"] == [new_id + 1]  # ids are never reused, across restarts too
    # the FAISS gallery was never touched
    assert faiss_server.process.poll() is None
    assert httpx.get(f"{faiss_server.url}/readyz").json()["gallery_size"] == size
