"""Gallery index kinds (model_store/index_kinds.py) with real FAISS on small synthetic galleries:
search quality, add/remove, save/load, flat unchanged, clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import faiss
import numpy as np
import pytest
from PIL import Image

from model_store.gallery import GALLERY_FILE, Gallery, GalleryError, make_thumbnail
from model_store.index_kinds import KINDS, MIN_TRAIN, VectorIndex, default_params, factory_string

DIM = 128
N = 1200  # just above MIN_TRAIN
THUMB = make_thumbnail(Image.new("RGB", (8, 8)))


def clustered(n: int, seed: int = 0, clusters: int = 40) -> np.ndarray:
    """Sparse, non-negative, clustered vectors, like fc7 features."""
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(123).gamma(1.0, 1.0, (clusters, DIM)) * (rng.random((clusters, DIM)) < 0.5)
    v = centres[rng.integers(0, clusters, n)] + rng.normal(0, 0.3, (n, DIM))
    return np.maximum(v, 0).astype(np.float32)


def fill(gallery: Gallery, vectors: np.ndarray) -> list[int]:
    n = len(vectors)
    return [it.id for it in gallery.add(vectors, ["x"] * n, [None] * n, [THUMB] * n)]


def recall_at_10(gallery: Gallery, base: np.ndarray, ids: list[int], queries: np.ndarray) -> float:
    _, exact = faiss.knn(queries, base, 10)
    found = gallery.search(queries, 10)
    hits = [len({h.item.id for h in row} & {ids[j] for j in truth}) for row, truth in zip(found, exact, strict=True)]
    return sum(hits) / (10 * len(queries))


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    return clustered(N), clustered(50, seed=1)


@pytest.mark.parametrize("kind", KINDS)
def test_each_kind_searches_adds_removes_and_survives_reload(kind: str, data, tmp_path: Path) -> None:
    base, queries = data
    directory = tmp_path / "index"
    gallery = Gallery.empty(directory, DIM, index_kind=kind)
    ids = fill(gallery, base)
    assert gallery.index_kind == kind
    rec = recall_at_10(gallery, base, ids, queries)
    assert rec == 1.0 if kind == "flat" else rec >= 0.85, rec
    (self_hit,) = gallery.search(base[7:8], 1)
    assert self_hit[0].item.id == ids[7]
    np.testing.assert_allclose(gallery.vector(ids[7]), base[7], atol=0 if kind == "flat" else 0.05)

    # add and remove: ids stay right after a removal (IndexIDMap2 over IVF would shift them)
    gallery.remove(ids[0])
    (added,) = fill(gallery, clustered(1, seed=5))
    assert ids[0] not in gallery and added in gallery and len(gallery) == N
    for j in (1, 600, N - 1):
        assert gallery.search(base[j : j + 1], 1)[0][0].item.id == ids[j]
    assert gallery.search(clustered(1, seed=5), 1)[0][0].item.id == added
    assert all(h.item.id != ids[0] for h in gallery.search(base[0:1], 10)[0])

    # save/load: the kind, its parameters and the answers come back
    reloaded = Gallery.load(directory)
    assert (reloaded.index_kind, reloaded.index_params) == (kind, gallery.index_params)
    before = [[(h.item.id, h.distance) for h in row] for row in gallery.search(queries, 10)]
    after = [[(h.item.id, h.distance) for h in row] for row in reloaded.search(queries, 10)]
    assert after == before
    reloaded.remove(ids[1])  # removal works on a loaded index too (the IVF id map is saved)
    assert len(Gallery.load(directory)) == N - 1
    meta = json.loads((directory / GALLERY_FILE).read_text())
    assert meta.get("index_kind", "flat") == kind
    # the changes after the build were appended to the log: the base of generation 1 is still the one
    files = sorted(p.name for p in directory.glob("*-1.*"))
    rerank = kind in ("ivf_pq", "opq_ivf_pq", "binary")
    assert files == ["changes-1.log"] + (["rerank-1.faiss", "vectors-1.faiss"] if rerank else ["vectors-1.faiss"])


def test_flat_gallery_file_keeps_its_keys_and_names_its_change_log(tmp_path: Path) -> None:
    gallery = Gallery.empty(tmp_path / "index", DIM)
    fill(gallery, clustered(3))
    meta = json.loads((tmp_path / "index" / GALLERY_FILE).read_text())
    assert list(meta) == [
        "format", "dim", "metric", "generation", "next_id", "vectors_file", "vectors_sha256", "changes_file", "items",
    ]  # fmt: skip
    assert meta["format"] == 3 and meta["changes_file"] == "changes-1.log"  # format 1/2 readers refuse it
    index = faiss.read_index(str(tmp_path / "index" / meta["vectors_file"]))
    assert isinstance(faiss.downcast_index(index), faiss.IndexIDMap2)
    assert isinstance(faiss.downcast_index(faiss.downcast_index(index).index), faiss.IndexFlatL2)


def test_a_bad_kind_name_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"unknown index kind 'hnsw'; choose one of flat, sq_fp16"):
        Gallery.empty(tmp_path / "index", DIM, index_kind="hnsw")
    directory = tmp_path / "g"
    fill(Gallery.empty(directory, DIM, index_kind="sq_fp16"), clustered(3))
    meta = json.loads((directory / GALLERY_FILE).read_text())
    (directory / GALLERY_FILE).write_text(json.dumps(meta | {"index_kind": "annoy"}))
    with pytest.raises(GalleryError, match="unknown index kind 'annoy'"):
        Gallery.load(directory)


def test_trainable_kinds_need_enough_vectors(tmp_path: Path) -> None:
    gallery = Gallery.empty(tmp_path / "index", DIM, index_kind="ivf_pq")
    with pytest.raises(ValueError, match=f"needs at least {MIN_TRAIN}.*'flat'"):
        fill(gallery, clustered(50))
    assert len(gallery) == 0 and not (tmp_path / "index" / GALLERY_FILE).exists()


def test_parameters_follow_the_gallery_size_and_can_be_given() -> None:
    assert factory_string("ivf_pq", default_params("ivf_pq", 4096, 1_000_000)) == "IVF1024,PQ64"
    assert factory_string("opq_ivf_pq", default_params("opq_ivf_pq", 4096, 100_000)) == "OPQ64_256,IVF256,PQ64"
    assert factory_string("binary", default_params("binary", 4096, 1_000_000)) == "IDMap2,ITQ512,LSH"
    vi = VectorIndex.new("ivf_pq", DIM, {"nprobe": 3})
    vi.add(clustered(N), np.arange(N))
    assert vi.params["nprobe"] == 3 and faiss.extract_index_ivf(vi.index).nprobe == 3
    with pytest.raises(ValueError, match="increasing"):
        vi.add(clustered(2), np.array([5, 6]))


def test_alexnet_index_takes_an_index_kind() -> None:
    import argparse

    from alexnet_cli.index import add_arguments

    parser = add_arguments(argparse.ArgumentParser())
    assert parser.parse_args(["--data-root", "d"]).index_kind == "flat"
    assert parser.parse_args(["--data-root", "d", "--index-kind", "ivf_pq"]).index_kind == "ivf_pq"
