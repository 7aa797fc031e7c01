"""model_store/gallery.py on synthetic vectors: exact search, ids, persistence, crash leftovers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from gallery_helpers import kill_writer_midway
from PIL import Image

from model_store.gallery import (
    GALLERY_FILE,
    THUMBS_DIR,
    Gallery,
    GalleryError,
    UnknownItemError,
    add_vectors,
    as_vectors,
    euclidean,
    make_thumbnail,
    new_index,
    remove_vectors,
    search_index,
)
from model_store.writer_lock import LOCK_FILE

DIM = 16


def random_vectors(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, DIM)).astype(np.float32)


def thumbs(n: int) -> list[bytes]:
    return [make_thumbnail(Image.new("RGB", (200, 100), (i * 20 % 256, 0, 0))) for i in range(n)]


def fill(gallery: Gallery, vectors: np.ndarray, label: str = "x") -> list[int]:
    n = len(vectors)
    return [it.id for it in gallery.add(vectors, [label] * n, [f"src/{i}.jpg" for i in range(n)], thumbs(n))]


def test_flat_search_equals_exact_search() -> None:
    base, queries = random_vectors(200, seed=1), random_vectors(7, seed=2)
    ids = np.arange(1000, 1200)
    index = new_index(DIM)
    add_vectors(index, base, ids)
    squared, found = search_index(index, queries, 10)
    exact = ((queries[:, None, :].astype(np.float64) - base[None, :, :]) ** 2).sum(-1)
    order = np.argsort(exact, axis=1)[:, :10]
    np.testing.assert_array_equal(found, ids[order])
    np.testing.assert_allclose(euclidean(squared), np.sqrt(np.take_along_axis(exact, order, 1)), rtol=1e-4)


def test_dimension_and_id_checks() -> None:
    index = new_index(DIM)
    with pytest.raises(ValueError, match=r"\[n, 16\]"):
        add_vectors(index, np.zeros((3, DIM + 1), np.float32), [0, 1, 2])
    with pytest.raises(ValueError, match="ids"):
        add_vectors(index, np.zeros((3, DIM), np.float32), [0, 1])
    with pytest.raises(ValueError, match="unique"):
        add_vectors(index, np.zeros((2, DIM), np.float32), [4, 4])
    with pytest.raises(ValueError, match="NaN"):
        as_vectors(np.full((1, DIM), np.nan), DIM)
    with pytest.raises(ValueError, match=r"\[n, 16\]"):
        search_index(index, np.zeros(DIM, np.float32), 1)  # a single vector must be [1, dim]
    assert as_vectors(np.zeros((2, DIM), np.float64), DIM).dtype == np.float32
    add_vectors(index, random_vectors(3), [5, 6, 7])
    assert remove_vectors(index, [6, 99]) == 1 and index.ntotal == 2


def test_search_excludes_pads_and_reports_euclidean(tmp_path: Path) -> None:
    gallery = Gallery.empty(tmp_path / "index", DIM)
    assert gallery.search(random_vectors(1), 3) == [[]]
    vectors = random_vectors(5)
    ids = fill(gallery, vectors)
    (hits,) = gallery.search(vectors[2:3], 10, exclude=[ids[2]])
    assert len(hits) == 4 and ids[2] not in [h.item.id for h in hits]
    expected = sorted(float(np.linalg.norm(vectors[2] - v)) for i, v in enumerate(vectors) if i != 2)
    np.testing.assert_allclose([h.distance for h in hits], expected, rtol=1e-5)
    (self_hit,) = gallery.search(vectors[2:3], 1)
    assert self_hit[0].item.id == ids[2] and self_hit[0].distance == pytest.approx(0, abs=1e-3)


def test_changes_persist_and_ids_are_never_reused(tmp_path: Path) -> None:
    directory = tmp_path / "index"
    gallery = Gallery.empty(directory, DIM)
    assert not directory.exists()  # nothing is written before the first change
    vectors = random_vectors(4)
    ids = fill(gallery, vectors, label="cat")
    assert ids == [0, 1, 2, 3]
    assert gallery.remove(3).label == "cat"
    reloaded = Gallery.load(directory)
    assert [it.id for it in reloaded.items()] == [0, 1, 2] and 3 not in reloaded
    np.testing.assert_array_equal(reloaded.vector(1), vectors[1])
    assert reloaded.get(2).source == "src/2.jpg"
    assert Image.open(reloaded.thumbnail_path(0)).size == (96, 48)
    assert not (directory / THUMBS_DIR / "3.jpg").exists()
    assert fill(reloaded, random_vectors(1, seed=9)) == [4]  # 3 was removed, not free for reuse
    # both changes were appended to the log; the base written by the first add is untouched
    assert sorted(p.name for p in directory.glob("vectors-*.faiss")) == ["vectors-1.faiss"]
    assert (directory / "changes-1.log").is_file()
    with pytest.raises(UnknownItemError):
        reloaded.remove(3)
    with pytest.raises(UnknownItemError):
        reloaded.vector(3)


def test_a_failed_change_leaves_memory_and_disk_as_they_were(tmp_path: Path) -> None:
    directory = tmp_path / "index"
    gallery = Gallery.empty(directory, DIM)
    fill(gallery, random_vectors(2))
    before = (directory / GALLERY_FILE).read_text()
    with pytest.raises(TypeError):  # the second thumbnail cannot be written: fails mid-change
        gallery.add(random_vectors(2, seed=5), ["a", "b"], [None, None], [b"\xff\xd8", None])  # type: ignore[list-item]
    assert len(gallery) == 2 and gallery.search(random_vectors(1), 5)[0][-1].item.id == 1
    assert (directory / GALLERY_FILE).read_text() == before
    assert len(Gallery.load(directory)) == 2


def test_leftovers_of_a_crash_are_ignored_and_removed(tmp_path: Path) -> None:
    directory = tmp_path / "index"
    fill(Gallery.empty(directory, DIM), random_vectors(3))
    # what a change killed before its commit leaves: a newer vector file, a temp file, a thumbnail
    (directory / "vectors-7.faiss").write_bytes(b"partial")
    (directory / f".{GALLERY_FILE}.tmp").write_text("{")
    (directory / THUMBS_DIR / "3.jpg").write_bytes(b"\xff\xd8")
    gallery = Gallery.load(directory)
    assert len(gallery) == 3
    assert sorted(p.name for p in directory.iterdir()) == [GALLERY_FILE, "thumbs", "vectors-1.faiss", LOCK_FILE]
    assert sorted(p.name for p in (directory / THUMBS_DIR).iterdir()) == ["0.jpg", "1.jpg", "2.jpg"]


def test_corruption_is_detected(tmp_path: Path) -> None:
    directory = tmp_path / "index"
    fill(Gallery.empty(directory, DIM), random_vectors(3))
    vectors_file = directory / "vectors-1.faiss"
    data = bytearray(vectors_file.read_bytes())
    data[-1] ^= 0xFF
    vectors_file.write_bytes(bytes(data))
    with pytest.raises(GalleryError, match="sha256"):
        Gallery.load(directory)
    with pytest.raises(GalleryError, match="holds no"):
        Gallery.load(tmp_path / "nowhere")
    fresh = tmp_path / "fresh"
    fill(Gallery.empty(fresh, DIM), random_vectors(1))
    with pytest.raises(GalleryError, match="16-d"):
        Gallery.open(fresh, DIM * 2)
    assert len(Gallery.open(tmp_path / "not-written-yet", DIM)) == 0


def test_kill_9_loses_no_acknowledged_change(tmp_path: Path) -> None:
    kill_writer_midway(tmp_path / "index", 30)
