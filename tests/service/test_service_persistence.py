"""Gallery changes over HTTP survive kill -9 and restarts; a corrupt model stops the start-up."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import httpx
import pytest
from PIL import Image
from service_helpers import assert_error

API_KEY = "persistence-test-key-0123"


def test_added_items_survive_kill_9_and_deletes_survive_a_restart(
    start_service, private_store: Path, odd_images
) -> None:
    key = {"X-API-Key": API_KEY}
    rotated, cmyk = odd_images["exif-rotated.jpg"][0], odd_images["cmyk.jpg"][0]
    server = start_service(private_store, api_key=API_KEY)
    with httpx.Client(base_url=server.url, timeout=60) as http:
        size = http.get("/readyz").json()["gallery_size"]
        files = [("files", ("rotated.jpg", rotated, "image/jpeg")), ("files", ("cmyk.jpg", cmyk, "image/jpeg"))]
        added = http.post("/index", files=files, data={"labels": "my_photos"}, headers=key)
        assert added.status_code == 200, added.text
        new_ids = added.json()["ids"]
        assert new_ids == [size, size + 1] and added.json()["gallery_size"] == size + 2
        assert [item["source"] for item in added.json()["items"]] == ["upload:rotated.jpg", "upload:cmyk.jpg"]
    server.kill()  # kill -9 right after the answer: an acknowledged add must already be on disk

    server = start_service(private_store, api_key=API_KEY)
    with httpx.Client(base_url=server.url, timeout=60) as http:
        assert http.get("/readyz").json()["gallery_size"] == size + 2
        hit = http.post("/similar", files={"file": ("q.jpg", rotated, "image/jpeg")}, data={"k": "1"}).json()
        nearest = hit["neighbors"][0]
        assert (nearest["id"], nearest["label"]) == (new_ids[0], "my_photos") and nearest["distance"] < 1e-2
        assert nearest["source"] == "upload:rotated.jpg"
        thumb = http.get(nearest["thumbnail_url"])
        with Image.open(io.BytesIO(thumb.content)) as image:
            assert image.height == 96 and image.width < 96  # the upright (portrait) photo
        deleted = http.delete(f"/index/{new_ids[0]}", headers=key)
        assert deleted.json() == {"id": new_ids[0], "deleted": True, "gallery_size": size + 1}
        assert_error(http.delete(f"/index/{new_ids[0]}", headers=key), 404, "not_found")
        assert_error(http.get(f"/gallery/{new_ids[0]}/thumbnail"), 404, "not_found")
    server.stop()
    assert "Application shutdown complete" in server.log()

    server = start_service(private_store)  # no api_key: the gallery is read-only
    with httpx.Client(base_url=server.url, timeout=60) as http:
        assert http.get("/readyz").json()["gallery_size"] == size + 1
        assert_error(http.post("/similar", data={"id": str(new_ids[0])}), 404, "not_found")
        assert http.post("/similar", data={"id": str(new_ids[1])}).json()["query"]["label"] == "my_photos"
        refused = http.delete(f"/index/{new_ids[1]}", headers=key)
        assert "no api_key" in assert_error(refused, 403, "forbidden")["message"]


def test_two_writers_on_one_gallery_get_a_conflict_not_a_lost_change(
    start_service, tiny_model, private_store: Path, odd_images
) -> None:
    """Two services with the API key on one store (a misconfiguration): the second to change the
    gallery would append at the offset it loaded, over the first one's change. It gets a 409."""
    key = {"X-API-Key": API_KEY}
    photo = [("files", ("rotated.jpg", odd_images["exif-rotated.jpg"][0], "image/jpeg"))]
    first, second = (start_service(private_store, api_key=API_KEY) for _ in range(2))
    with httpx.Client(base_url=first.url, timeout=60) as http:
        added = http.post("/index", files=photo, data={"labels": "first"}, headers=key)
        assert added.status_code == 200, added.text
    with httpx.Client(base_url=second.url, timeout=60) as http:
        size = http.get("/readyz").json()["gallery_size"]
        refused = http.post("/index", files=photo, data={"labels": "second"}, headers=key)
        assert "changed by another process" in assert_error(refused, 409, "gallery_conflict")["message"]
        assert "changed by another process" in assert_error(http.delete("/index/0", headers=key), 409)["message"]
        assert http.get("/readyz").json()["gallery_size"] == size  # and it goes on serving
        assert http.post("/similar", data={"id": "0", "k": "1"}).status_code == 200
    second.stop()
    restarted = start_service(private_store)
    with httpx.Client(base_url=restarted.url, timeout=60) as http:  # the first one's add is there
        new_id = added.json()["ids"][0]
        assert http.post("/similar", data={"id": str(new_id)}).json()["query"]["label"] == "first"


def test_a_corrupt_model_stops_the_start_up(start_service, tiny_model, private_store: Path, tmp_path: Path) -> None:
    mean = private_store / tiny_model.name / "v1" / "mean.npy"
    shutil.copyfile(mean, tmp_path / "mean.npy")
    mean.unlink()  # a real copy, not the hard link shared with the session's store
    data = bytearray((tmp_path / "mean.npy").read_bytes())
    data[-1] ^= 0x01
    mean.write_bytes(bytes(data))
    with pytest.raises(RuntimeError, match="corrupt"):
        start_service(private_store)
