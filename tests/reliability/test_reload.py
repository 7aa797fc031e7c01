"""POST /admin/reload on the real server: a corrupt, partial or unloadable new version is refused
with a clear JSON error while the last good one goes on serving; a good one is verified, warmed up
and swapped in without failing the requests in flight.

New versions are made beside v1 from v1's own files: hard links (no 230 MB copies), a manifest
naming the new version (and, for the good one, upper-cased labels, so its answers show which
model made them), a file cut short, or a garbage ONNX file published with matching checksums.
"""

from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path

import httpx
from reliability_helpers import API_KEY, KEY, assert_error

from model_store.manifest import MANIFEST_FILE, MEAN_FILE, MODEL_FILE
from model_store.store import publish_version, read_manifest


def linked_version(model_dir: Path, version: str, *, labels_upper: bool = False, cut_model_at: int = 0) -> Path:
    """``model_dir/version`` from v1's files as ``publish_version`` would lay it out."""
    source, target = model_dir / "v1", model_dir / version
    manifest = read_manifest(source)
    target.mkdir()
    for name in manifest.files:
        os.link(source / name, target / name)
    if cut_model_at:  # a partial copy: a real file of its own, shorter than the manifest's checksum says
        (target / MODEL_FILE).unlink()
        with open(source / MODEL_FILE, "rb") as whole:
            (target / MODEL_FILE).write_bytes(whole.read(cut_model_at))
    shutil.copytree(source / "index", target / "index", copy_function=os.link)  # same weights, same features
    labels = [label.upper() for label in manifest.labels] if labels_upper else manifest.labels
    (target / MANIFEST_FILE).write_text(
        manifest.model_copy(update={"version": version, "labels": labels}).model_dump_json()
    )
    return target


def served(http: httpx.Client) -> str:
    (model,) = http.get("/v1/models").json()["models"]
    return model["version"]


def test_reload_refuses_bad_versions_and_swaps_in_a_good_one(
    start_service, private_store: Path, tiny_model, photo_jpeg: bytes, tmp_path: Path
) -> None:
    model_dir = private_store / tiny_model.name
    server = start_service(private_store, api_key=API_KEY)
    upload = {"files": ("face.jpg", photo_jpeg, "image/jpeg")}
    with httpx.Client(base_url=server.url, timeout=120) as http:
        assert served(http) == "v1"
        assert http.post("/admin/reload", headers=KEY).json() == {
            "reloaded": False, "model": {"name": tiny_model.name, "version": "v1"},
            "previous": {"name": tiny_model.name, "version": "v1"},
        }  # fmt: skip
        assert_error(http.post("/admin/reload"), 401, "missing_api_key")

        linked_version(model_dir, "v2", cut_model_at=1 << 20)  # corrupt: a partial model file
        message = assert_error(http.post("/admin/reload", headers=KEY), 409, "reload_failed")["message"]
        assert "v2" in message and "corrupt" in message and "sha256" in message and "still serving v1" in message

        (model_dir / "v3").mkdir()  # partial: a version folder that never got its manifest
        shutil.copyfile(model_dir / "v1" / MEAN_FILE, model_dir / "v3" / MEAN_FILE)
        message = assert_error(http.post("/admin/reload", headers=KEY), 409, "reload_failed")["message"]
        assert "no manifest.json" in message and "still serving v1" in message

        garbage = tmp_path / MODEL_FILE  # checksums match, but it is no ONNX model
        garbage.write_bytes(b"\x08\x07" + os.urandom(4096))
        manifest = read_manifest(model_dir / "v1")
        v4 = publish_version(private_store, manifest, {MODEL_FILE: garbage, MEAN_FILE: model_dir / "v1" / MEAN_FILE})
        assert v4.name == "v4"
        message = assert_error(http.post("/admin/reload", headers=KEY), 409, "reload_failed")["message"]
        assert "v4 was not loaded" in message and "still serving v1" in message and "Traceback" not in message

        assert served(http) == "v1" and http.get("/readyz").json()["model"]["version"] == "v1"
        labels = {p["label"] for p in http.post("/classify", files=upload).json()["results"][0]["predictions"]}
        assert labels == set(tiny_model.classes)

        linked_version(model_dir, "v5", labels_upper=True)
        outcomes: list[int] = []
        stop = threading.Event()

        def keep_classifying() -> None:  # requests go on while the swap happens
            with httpx.Client(base_url=server.url, timeout=120) as client:
                while not stop.is_set():
                    outcomes.append(client.post("/classify", files=upload, data={"tta": "center"}).status_code)

        during = threading.Thread(target=keep_classifying)
        during.start()
        try:
            reloaded = http.post("/admin/reload", headers=KEY)
        finally:
            stop.set()
            during.join(120)
        assert reloaded.status_code == 200, reloaded.text
        assert reloaded.json()["reloaded"] and reloaded.json()["model"]["version"] == "v5"
        assert reloaded.json()["previous"]["version"] == "v1"
        assert outcomes and set(outcomes) == {200}, outcomes
        assert served(http) == "v5" and http.get("/readyz").json()["model"]["version"] == "v5"
        result = http.post("/classify", files=upload).json()
        assert result["model"]["version"] == "v5"
        assert {p["label"] for p in result["results"][0]["predictions"]} == {c.upper() for c in tiny_model.classes}
        assert http.post("/similar", data={"id": "0"}).status_code == 200  # v5's gallery is open
        assert http.post("/admin/reload", headers=KEY).json()["reloaded"] is False
    log = server.log()
    assert "now serving v5 (was v1)" in log and "reload of v2 failed" in log
