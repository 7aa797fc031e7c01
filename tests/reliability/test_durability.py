"""The gallery loses nothing when the real server is killed (SIGKILL) in the middle of a stream of
concurrent adds and deletes over HTTP: after a restart every acknowledged add is there, every
acknowledged delete is gone, and the index agrees with its metadata and thumbnails. The changes
are appended to the gallery's change log, so the kill lands during appends (a torn last record is
ignored at the restart and overwritten by the next append).

(test_service_persistence.py covers kill -9 after a single, finished change; test_gallery_store.py
a single-threaded writer killed in-process, without HTTP.)
"""

from __future__ import annotations

import json
import random
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import faiss
import httpx
from reliability_helpers import API_KEY, KEY, assert_error

from model_store import change_log
from model_store.gallery import GALLERY_FILE, THUMBS_DIR

ADDERS, DELETERS = 4, 2
ACKED_BEFORE_KILL = 40
KEEP = 12
STREAM_TIMEOUT_S = 90


@dataclass
class Ledger:
    """What the clients were told (acked) and what they never heard back about (pending)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    acked_adds: set[int] = field(default_factory=set)
    acked_deletes: set[int] = field(default_factory=set)
    pending_adds: int = 0  # requests without an answer: their ids are unknown
    pending_deletes: set[int] = field(default_factory=set)
    deletable: list[int] = field(default_factory=list)

    @property
    def acked(self) -> int:
        return len(self.acked_adds) + len(self.acked_deletes)


def add_loop(url: str, jpeg: bytes, ledger: Ledger, stop: threading.Event, worker: int) -> None:
    with httpx.Client(base_url=url, timeout=30, headers=KEY) as http:
        while not stop.is_set():
            try:
                response = http.post("/index", files={"files": (f"w{worker}.jpg", jpeg, "image/jpeg")},
                                     data={"labels": f"worker{worker}"})  # fmt: skip
            except httpx.TransportError:
                with ledger.lock:
                    ledger.pending_adds += 1
                return
            assert response.status_code == 200, response.text
            with ledger.lock:
                ledger.acked_adds.update(response.json()["ids"])
                ledger.deletable.extend(response.json()["ids"])


def delete_loop(url: str, ledger: Ledger, stop: threading.Event, seed: int) -> None:
    rng = random.Random(seed)
    with httpx.Client(base_url=url, timeout=30, headers=KEY) as http:
        while not stop.is_set():
            with ledger.lock:
                # keep some items, so what is left after the crash is worth checking
                item_id = (
                    ledger.deletable.pop(rng.randrange(len(ledger.deletable))) if len(ledger.deletable) > KEEP else None
                )
            if item_id is None:
                time.sleep(0.01)
                continue
            try:
                response = http.delete(f"/index/{item_id}")
            except httpx.TransportError:
                with ledger.lock:
                    ledger.pending_deletes.add(item_id)
                return
            assert response.status_code == 200, response.text
            with ledger.lock:
                ledger.acked_deletes.add(item_id)


def gallery_on_disk(index_dir: Path) -> tuple[dict, set[int], int]:
    """gallery.json and the ids in the FAISS file it names, each with the changes of the change log
    it names replayed (its items and next id, the vectors' ids), and how many changes that log holds."""
    meta = json.loads((index_dir / GALLERY_FILE).read_text())
    index = faiss.read_index(str(index_dir / meta["vectors_file"]))
    assert index.ntotal == len(meta["items"])
    items = {item["id"]: item for item in meta["items"]}
    vector_ids = set(faiss.vector_to_array(index.id_map).tolist())
    log_file = index_dir / meta["changes_file"]
    records, end = change_log.read(log_file, meta["generation"], index.d)  # ([], 0) before any change
    assert end <= (log_file.stat().st_size if log_file.exists() else 0)  # a torn tail waits for the next append
    next_id = meta["next_id"]
    for record in records:
        if isinstance(record, change_log.AddRecord):
            assert len(record.vectors) == len(record.items)
            items.update((item["id"], item) for item in record.items)
            vector_ids.update(item["id"] for item in record.items)
            next_id = max(next_id, record.items[-1]["id"] + 1)
        else:
            del items[record.id]
            vector_ids.remove(record.id)
    return meta | {"items": list(items.values()), "next_id": next_id}, vector_ids, len(records)


def test_kill_9_mid_stream_loses_no_acknowledged_change(
    start_service, private_store: Path, tiny_model, photo_jpeg: bytes, other_jpeg: bytes
) -> None:
    index_dir = private_store / tiny_model.name / tiny_model.version_dir.name / "index"
    server = start_service(private_store, api_key=API_KEY)
    with httpx.Client(base_url=server.url, timeout=30) as http:
        initial = {item["id"] for item in gallery_on_disk(index_dir)[0]["items"]}
        assert http.get("/readyz").json()["gallery_size"] == len(initial) > 0
    ledger = Ledger(deletable=sorted(initial))
    stop = threading.Event()
    workers = [
        threading.Thread(target=add_loop, args=(server.url, (photo_jpeg, other_jpeg)[i % 2], ledger, stop, i))
        for i in range(ADDERS)
    ] + [threading.Thread(target=delete_loop, args=(server.url, ledger, stop, i)) for i in range(DELETERS)]
    for worker in workers:
        worker.start()
    deadline = time.monotonic() + STREAM_TIMEOUT_S
    while ledger.acked < ACKED_BEFORE_KILL and time.monotonic() < deadline:
        time.sleep(0.02)
    server.kill()  # SIGKILL while the clients are still sending
    stop.set()
    for worker in workers:
        worker.join(60)
    assert ledger.acked >= ACKED_BEFORE_KILL, "the stream did not get going"
    assert ledger.acked_adds and ledger.acked_deletes

    server = start_service(private_store, api_key=API_KEY, max_k=1000)
    meta, faiss_ids, logged = gallery_on_disk(index_dir)
    assert logged, "the changes were not appended to the change log"
    stored = {item["id"] for item in meta["items"]}
    must_exist = (initial | ledger.acked_adds) - ledger.acked_deletes - ledger.pending_deletes
    assert must_exist <= stored, f"acknowledged adds lost: {sorted(must_exist - stored)}"
    assert not stored & ledger.acked_deletes, f"acknowledged deletes came back: {sorted(stored & ledger.acked_deletes)}"
    unacked = stored - initial - ledger.acked_adds  # only adds that never got their answer
    assert len(unacked) <= ledger.pending_adds, (sorted(unacked), ledger.pending_adds)
    assert faiss_ids == stored
    thumbs = {path.name for path in (index_dir / THUMBS_DIR).iterdir()}
    assert thumbs == {item["thumbnail"] for item in meta["items"]}  # no orphans left by the crash
    with httpx.Client(base_url=server.url, timeout=30) as http:
        assert http.get("/readyz").json()["gallery_size"] == len(stored)
        assert http.get("/v1/models").json()["models"][0]["gallery_size"] == len(stored)
        for item_id in stored:
            thumbnail = http.get(f"/gallery/{item_id}/thumbnail")
            assert thumbnail.status_code == 200 and thumbnail.content[:2] == b"\xff\xd8", item_id
        for item_id in ledger.acked_deletes:
            assert_error(http.get(f"/gallery/{item_id}/thumbnail"), 404, "not_found")
            assert_error(http.post("/similar", data={"id": str(item_id)}), 404, "not_found")
        some = sorted(ledger.acked_adds - ledger.acked_deletes)[-1]
        neighbours = http.post("/similar", data={"id": str(some), "k": "1000"}).json()["neighbors"]
        assert {n["id"] for n in neighbours} == stored - {some}  # search sees exactly the stored items
        added = http.post("/index", files={"files": ("new.jpg", photo_jpeg, "image/jpeg")}, data={"labels": "after"},
                          headers=KEY)  # fmt: skip
        assert added.json()["ids"][0] >= meta["next_id"]  # ids are never reused, even those lost in flight
    in_flight = f"{ledger.pending_adds} adds and {len(ledger.pending_deletes)} deletes in flight"
    print(
        f"\nkilled after {len(ledger.acked_adds)} acked adds and {len(ledger.acked_deletes)} acked deletes, {in_flight}"
    )
