"""The gallery's append-only change log (model_store/gallery.py, model_store/change_log.py) with real
FAISS and real files: a change is an append, a reload replays it, a torn tail is ignored (then overwritten), removed
items stay removed, and a long log is compacted into a new base."""

from __future__ import annotations

import json
import logging
import os
import resource
import shutil
import signal
import threading
from pathlib import Path

import numpy as np
import pytest
from gallery_helpers import kill_writer_midway
from PIL import Image

from model_store import change_log
from model_store.gallery import (
    GALLERY_FILE,
    THUMBS_DIR,
    Compaction,
    Gallery,
    GalleryError,
    UnknownItemError,
    make_thumbnail,
)
from model_store.gallery import search as gallery_module
from model_store.index_kinds import KINDS, MIN_TRAIN
from model_store.writer_lock import LOCK_FILE

DIM = 64  # small, and a multiple of what the PQ kinds need
THUMB = make_thumbnail(Image.new("RGB", (8, 8)))
NEVER = Compaction(records=10**9, fraction=0, max_bytes=1 << 40)


def rand(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, DIM)).astype(np.float32)


def fill(gallery: Gallery, vectors: np.ndarray, label: str = "x") -> list[int]:
    n = len(vectors)
    return [it.id for it in gallery.add(vectors, [label] * n, [f"src/{label}{i}" for i in range(n)], [THUMB] * n)]


def base_vectors(kind: str) -> np.ndarray:
    return rand(40 if kind in ("flat", "sq_fp16") else MIN_TRAIN + 100, seed=1)


@pytest.fixture(scope="module")
def bases(tmp_path_factory) -> dict[str, Path]:
    """Each kind's base gallery, built (and trained) once per module; tests change copies."""
    return {"dir": tmp_path_factory.mktemp("bases")}


def built(
    bases: dict[str, Path], directory: Path, kind: str = "flat", compaction: Compaction = NEVER
) -> tuple[Gallery, np.ndarray]:
    """A gallery whose base holds 40 vectors (flat, sq_fp16) or MIN_TRAIN + 100 (trainable kinds)."""
    if kind not in bases:
        bases[kind] = bases["dir"] / kind
        params = {"d_out": 16, "m": 4} if kind == "opq_ivf_pq" else None  # OPQ trains slowly in 64 dims
        fill(Gallery.empty(bases[kind], DIM, index_kind=kind, index_params=params), base_vectors(kind), label="base")
    shutil.copytree(bases[kind], directory)
    return Gallery.load(directory, compaction=compaction), base_vectors(kind)


def answers(gallery: Gallery, queries: np.ndarray, k: int = 10) -> list[list[tuple[int, float]]]:
    return [[(h.item.id, h.distance) for h in row] for row in gallery.search(queries, k)]


def assert_same(a: list[list[tuple[int, float]]], b: list[list[tuple[int, float]]]) -> None:
    assert [[i for i, _ in row] for row in a] == [[i for i, _ in row] for row in b]
    np.testing.assert_allclose([[d for _, d in row] for row in a], [[d for _, d in row] for row in b], rtol=1e-5)


def log_path(directory: Path) -> Path:
    return directory / json.loads((directory / GALLERY_FILE).read_text())["changes_file"]


def test_a_change_is_an_append_that_leaves_the_base_and_gallery_json_alone(bases, tmp_path: Path) -> None:
    directory = tmp_path / "index"
    gallery, _ = built(bases, directory)
    vectors_file = directory / "vectors-1.faiss"
    before = (vectors_file.stat(), vectors_file.read_bytes(), (directory / GALLERY_FILE).read_bytes())
    assert not log_path(directory).exists()  # a log is made by the first change after a base
    sizes = []
    (added,) = fill(gallery, rand(1, seed=2), label="new")
    sizes.append(log_path(directory).stat().st_size)
    gallery.remove(3)
    sizes.append(log_path(directory).stat().st_size)
    gallery.remove(added)
    sizes.append(log_path(directory).stat().st_size)
    after = vectors_file.stat()
    assert (after.st_ino, after.st_mtime_ns, after.st_size) == (
        before[0].st_ino,
        before[0].st_mtime_ns,
        before[0].st_size,
    )
    assert vectors_file.read_bytes() == before[1] and (directory / GALLERY_FILE).read_bytes() == before[2]
    assert sizes[0] > DIM * 4 and sizes[1] == sizes[0] + 17 and sizes[2] == sizes[1] + 17  # 8 framing + 9 payload
    assert sorted(p.name for p in directory.iterdir()) == [
        "changes-1.log",
        GALLERY_FILE,
        "thumbs",
        "vectors-1.faiss",
        LOCK_FILE,
    ]
    records, end = change_log.read(log_path(directory), 1, DIM)
    assert end == sizes[2]
    assert [type(r).__name__ for r in records] == ["AddRecord", "RemoveRecord", "RemoveRecord"]
    assert records[0].items == [{"id": added, "label": "new", "source": "src/new0", "thumbnail": f"{added}.jpg"}]
    np.testing.assert_array_equal(records[0].vectors, rand(1, seed=2))
    assert (records[1].id, records[2].id) == (3, added)
    assert not (directory / THUMBS_DIR / "3.jpg").exists() and not (directory / THUMBS_DIR / f"{added}.jpg").exists()


@pytest.mark.parametrize("kind", ["flat", "ivf_pq"])
def test_a_reload_replays_the_log(bases, kind: str, tmp_path: Path) -> None:
    directory = tmp_path / "index"
    gallery, base = built(bases, directory, kind)
    singles = [fill(gallery, rand(1, seed=10 + i), label=f"one{i}")[0] for i in range(3)]
    batch = fill(gallery, rand(4, seed=20), label="batch")
    for item_id in (0, 7, singles[1], batch[2]):
        gallery.remove(item_id)
    queries = np.concatenate([base[:5], rand(1, seed=10), rand(4, seed=20), rand(10, seed=30)])
    live = answers(gallery, queries)

    reloaded = Gallery.load(directory)
    assert reloaded.items() == gallery.items() and len(reloaded) == len(base) + 7 - 4
    assert reloaded.next_id == gallery.next_id == batch[-1] + 1
    assert_same(answers(reloaded, queries), live)
    for item_id in (1, singles[0], batch[3]):
        np.testing.assert_array_equal(reloaded.vector(item_id), gallery.vector(item_id))
    np.testing.assert_array_equal(reloaded.vector(batch[3]), rand(4, seed=20)[3])  # exact until compacted
    assert live[5][0][0] == singles[0] and live[5][0][1] < 1e-3  # the delta's own row is found
    assert fill(reloaded, rand(1, seed=40)) == [batch[-1] + 1]  # ids are never reused
    assert json.loads((directory / GALLERY_FILE).read_text())["generation"] == 1


@pytest.mark.parametrize("tail", ["cut", "garbage", "zeros"])
def test_a_torn_tail_is_dropped_and_the_log_goes_on(bases, tail: str, tmp_path: Path, caplog) -> None:
    directory = tmp_path / "index"
    gallery, _ = built(bases, directory)
    (kept,) = fill(gallery, rand(1, seed=2), label="kept")
    path = log_path(directory)
    committed = path.stat().st_size
    if tail == "cut":  # the last add was cut short by a crash: it was never acknowledged
        (torn,) = fill(gallery, rand(1, seed=3), label="torn")
        assert (directory / THUMBS_DIR / f"{torn}.jpg").exists()
        with open(path, "r+b") as fh:
            fh.truncate(committed + (path.stat().st_size - committed) // 2)
    else:
        with open(path, "ab") as fh:
            fh.write(b"\x30\x00\x00\x00\x01\x02\x03\x04half a record" if tail == "garbage" else bytes(4096))
    dropped = path.stat().st_size - committed

    with caplog.at_level(logging.WARNING, logger="model_store.change_log"):
        reloaded = Gallery.load(directory)
    assert f"ignored {dropped} bytes" in caplog.text
    assert path.stat().st_size == committed + dropped  # loading never writes: a reader may be a replica
    assert [it.label for it in reloaded.items()][-1] == "kept" and kept in reloaded
    assert sorted(p.name for p in (directory / THUMBS_DIR).iterdir()) == sorted(it.thumbnail for it in reloaded.items())
    (later,) = fill(reloaded, rand(1, seed=4), label="later")
    assert later == kept + 1  # the torn add's id was never handed out
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="model_store.change_log"):
        again = Gallery.load(directory)
    assert "ignored" not in caplog.text  # the next append overwrote the torn tail and cut it off
    assert [it.label for it in again.items()][-2:] == ["kept", "later"]
    assert_same(answers(again, rand(3, seed=4)), answers(reloaded, rand(3, seed=4)))


def test_a_torn_log_creation_and_other_generations_logs(bases, tmp_path: Path, caplog) -> None:
    directory = tmp_path / "index"
    built(bases, directory)
    path = directory / "changes-1.log"
    path.write_bytes(change_log.header(1)[:10])  # killed while the log's first write was under way
    (directory / "changes-0.log").write_bytes(change_log.header(0))  # a leftover of another generation
    with caplog.at_level(logging.WARNING, logger="model_store.change_log"):
        gallery = Gallery.load(directory)
    assert "torn change log of 10 bytes" in caplog.text and len(gallery) == 40
    assert path.stat().st_size == 10 and not (directory / "changes-0.log").exists()
    fill(gallery, rand(1, seed=2))  # rewrites the torn log from its start
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="model_store.change_log"):
        assert len(Gallery.load(directory)) == 41
    assert "torn" not in caplog.text
    path.write_bytes(change_log.header(7) + path.read_bytes()[len(change_log.header(1)) :])
    with pytest.raises(GalleryError, match="not the change log of generation 1"):
        Gallery.load(directory)


@pytest.mark.parametrize(
    ("kind", "overfetch"),
    [(kind, overfetch) for kind in KINDS for overfetch in (True, False)],
)
def test_removed_items_never_come_back(bases, kind: str, overfetch: bool, tmp_path: Path, monkeypatch) -> None:
    if not overfetch:  # the path a gallery takes with more tombstones than a first stage can skip by asking for more
        monkeypatch.setattr(gallery_module, "OVERFETCH_MAX", 0)
    directory = tmp_path / "index"
    gallery, base = built(bases, directory, kind)
    delta = fill(gallery, rand(3, seed=5), label="delta")
    removed = [0, 1, 2, 5, 8, delta[0]]
    for item_id in removed:
        gallery.remove(item_id)
    queries = np.concatenate([base[[0, 1, 2, 5, 8, 9]], rand(3, seed=5)])
    for g in (gallery, Gallery.load(directory)):
        everything = g.search(queries, len(g))
        for row in everything:
            assert not {h.item.id for h in row} & set(removed)
        for row in g.search(queries, 5):
            assert len(row) == 5 and not {h.item.id for h in row} & set(removed)
        assert (
            g.search(base[9:10], 1)[0][0].item.id == 9 and g.search(rand(3, seed=5)[1:2], 1)[0][0].item.id == delta[1]
        )
        for item_id in removed:
            assert item_id not in g
            with pytest.raises(UnknownItemError):
                g.vector(item_id)
            with pytest.raises(UnknownItemError):
                g.get(item_id)
            with pytest.raises(UnknownItemError):
                g.remove(item_id)
    if kind == "flat":  # exact: the answers are brute force over what is left
        live = {it.id: gallery.vector(it.id) for it in gallery.items()}
        ids = np.array(sorted(live))
        dist = np.linalg.norm(queries[:, None, :] - np.stack([live[i] for i in ids])[None], axis=2)
        found = answers(gallery, queries, 10)
        assert [[i for i, _ in row] for row in found] == [ids[np.argsort(d, kind="stable")[:10]].tolist() for d in dist]
        np.testing.assert_allclose([[d for _, d in row] for row in found], np.sort(dist, axis=1)[:, :10], rtol=1e-4)


@pytest.mark.parametrize("kind", ["flat", "ivf_pq"])
def test_a_long_log_is_compacted_into_a_new_base(bases, kind: str, tmp_path: Path) -> None:
    directory = tmp_path / "index"
    gallery, base = built(bases, directory, kind, compaction=Compaction(records=3, fraction=0))
    rerank = kind != "flat"
    first = fill(gallery, rand(2, seed=2), label="a")
    gallery.remove(4)
    gallery.remove(first[0])  # 3 records: still a log
    assert log_path(directory).name == "changes-1.log" and log_path(directory).exists()
    queries = np.concatenate([base[:3], rand(2, seed=2), rand(5, seed=3)])
    before_items, before = gallery.items(), answers(gallery, queries)
    (second,) = fill(gallery, rand(1, seed=6), label="b")  # the 4th record: compacts instead

    meta = json.loads((directory / GALLERY_FILE).read_text())
    assert meta["generation"] == 2 and meta["changes_file"] == "changes-2.log"
    names = sorted(p.name for p in directory.iterdir())
    assert names == [GALLERY_FILE] + (["rerank-2.faiss"] if rerank else []) + ["thumbs", "vectors-2.faiss", LOCK_FILE]
    assert gallery.items() == before_items + [gallery.get(second)]
    assert [row["id"] for row in meta["items"]] == [it.id for it in gallery.items()] and meta["next_id"] == second + 1
    reloaded = Gallery.load(directory)
    assert reloaded.items() == gallery.items()
    assert_same(answers(reloaded, queries), answers(gallery, queries))
    if not rerank:  # exact: the answers do not change when the delta moves into the base
        after = [[hit for hit in row if hit[0] != second] for row in answers(gallery, queries, 11)]
        assert_same([row[:10] for row in after], before)
        np.testing.assert_array_equal(gallery.vector(first[1]), rand(2, seed=2)[1])
    else:
        np.testing.assert_allclose(gallery.vector(first[1]), rand(2, seed=2)[1], atol=0.1)  # now SQ8
    assert 4 not in reloaded and first[0] not in reloaded

    # a change that would take the log past max_bytes compacts too
    small = Gallery.load(directory, compaction=Compaction(records=1000, fraction=0, max_bytes=1000))
    fill(small, rand(1, seed=7))  # about 300 bytes: appended
    assert json.loads((directory / GALLERY_FILE).read_text())["generation"] == 2
    fill(small, rand(4, seed=8))  # 1 KiB of vectors: compacted
    assert json.loads((directory / GALLERY_FILE).read_text())["generation"] == 3
    assert not (directory / "changes-2.log").exists() and len(Gallery.load(directory)) == len(small)


def test_a_bulk_build_is_one_base_write_and_a_failed_append_changes_nothing(bases, tmp_path: Path) -> None:
    directory = tmp_path / "index"
    gallery, _ = built(bases, directory, "ivf_pq")
    assert sorted(p.name for p in directory.iterdir()) == [
        GALLERY_FILE, "rerank-1.faiss", "thumbs", "vectors-1.faiss", LOCK_FILE
    ]  # fmt: skip
    fill(gallery, rand(1, seed=2))
    path = log_path(directory)
    size, items = path.stat().st_size, gallery.items()
    # the file size limit lets 8 bytes of the 17-byte remove record through, then the write fails
    limits = resource.getrlimit(resource.RLIMIT_FSIZE)
    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (size + 8, limits[1]))
    try:
        with pytest.raises(OSError, match="too large"):
            gallery.remove(items[-1].id)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, limits)
        signal.signal(signal.SIGXFSZ, handler)
    assert gallery.items() == items and path.stat().st_size == size  # the torn bytes were taken back
    gallery.remove(items[-1].id)
    assert Gallery.load(directory).items() == items[:-1]


def test_appends_do_not_show_through_a_hard_linked_copy(bases, tmp_path: Path) -> None:
    directory = tmp_path / "index"
    gallery, _ = built(bases, directory)
    fill(gallery, rand(1, seed=2))
    copy = tmp_path / "copy"
    shutil.copytree(directory, copy, copy_function=os.link)  # as tests/conftest.py's clone_store does
    original = (directory / "changes-1.log").read_bytes()
    changed = Gallery.load(copy)
    changed.remove(0)
    fill(changed, rand(1, seed=3))
    assert (directory / "changes-1.log").read_bytes() == original and 0 in Gallery.load(directory)
    assert 0 not in Gallery.load(copy) and len(Gallery.load(copy)) == len(gallery)


def test_searches_run_during_changes_and_see_whole_snapshots(bases, tmp_path: Path) -> None:
    directory = tmp_path / "index"
    gallery, base = built(bases, directory, compaction=Compaction(records=7, fraction=0))
    errors: list[BaseException] = []
    stop = threading.Event()

    def searcher() -> None:
        try:
            while not stop.is_set():
                for row in gallery.search(base[:4], 8):
                    ids, distances = [h.item.id for h in row], [h.distance for h in row]
                    assert len(row) == 8 and len(set(ids)) == 8 and distances == sorted(distances)
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)

    thread = threading.Thread(target=searcher)
    thread.start()
    try:
        for i in range(30):  # appends, delta removals, base removals and compactions (every 8th change)
            (item_id,) = fill(gallery, rand(1, seed=100 + i))
            gallery.remove(item_id if i % 2 else i)
    finally:
        stop.set()
        thread.join(30)
    assert not errors, errors[0]
    assert len(gallery) == len(base) and not {item.id for item in gallery.items()} & set(range(0, 30, 2))
    assert Gallery.load(directory).items() == gallery.items()


def test_a_gallery_of_format_1_is_read_and_rewritten_by_its_first_change(bases, tmp_path: Path) -> None:
    directory = tmp_path / "index"
    gallery, base = built(bases, directory)
    meta = json.loads((directory / GALLERY_FILE).read_text())
    del meta["changes_file"]
    (directory / GALLERY_FILE).write_text(json.dumps(meta | {"format": 1}))  # as the code before the log wrote it
    old = Gallery.load(directory)
    assert old.items() == gallery.items()
    old.remove(0)
    meta = json.loads((directory / GALLERY_FILE).read_text())
    assert (meta["format"], meta["generation"], meta["changes_file"]) == (3, 2, "changes-2.log")
    assert 0 not in Gallery.load(directory) and len(Gallery.load(directory)) == len(base) - 1


@pytest.mark.parametrize("records", [1000, 4], ids=["appends", "appends-and-compactions"])
def test_kill_9_during_appends_loses_no_acknowledged_change(records: int, tmp_path: Path) -> None:
    directory = tmp_path / "index"
    gallery, present = kill_writer_midway(directory, 60, str(records))
    generation = json.loads((directory / GALLERY_FILE).read_text())["generation"]
    assert generation > 1 if records == 4 else generation == 1
    assert {p.name for p in (directory / THUMBS_DIR).iterdir()} == {f"{i}.jpg" for i in present}
    leftovers = {p.name for p in directory.iterdir()} - {GALLERY_FILE, THUMBS_DIR, f"vectors-{generation}.faiss"}
    assert leftovers <= {f"changes-{generation}.log", LOCK_FILE}  # the killed writer's lock died with it
    for item_id in present:
        assert gallery.search(gallery.vector(item_id)[None], 1)[0][0].item.id == item_id
