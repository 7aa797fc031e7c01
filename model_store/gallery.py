"""The retrieval gallery of a model version: fc7 vectors in FAISS, item metadata and thumbnails.

Layout, in ``<version_dir>/index/``::

    gallery.json             format, dim, next id, the vectors file's name and sha256, the items
    vectors-<generation>.faiss   IndexIDMap2 over IndexFlatL2 (int64 ids)
    thumbs/<id>.jpg          small JPEG thumbnails

``gallery.json`` is the commit point. A change writes a new ``vectors-<g+1>.faiss`` and the new
thumbnails (each fsynced), then replaces ``gallery.json`` atomically, and only then returns; so
after a crash (kill -9 included) the folder holds the whole old gallery or the whole new one, and
the unreferenced leftovers are removed the next time it is opened. Each change rewrites the
vector file (16 KiB per item), which is fine for galleries of thousands of items.

Distances: ``IndexFlatL2`` returns squared L2; ``Gallery.search`` reports the Euclidean distance
(the square root), as in the paper's Figure 4.

In memory a change is made on a copy of the index, which replaces the live one only after it is
on disk: searches never see a half-made change and a failed write leaves the gallery as it was.
Only numpy, faiss and Pillow are used here (the service must not need torch). One process writes
a gallery at a time.
"""

from __future__ import annotations

import functools
import io
import json
import logging
import os
import re
import threading
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import faiss
import numpy as np
from PIL import Image

from model_store.store import fsync_path, sha256_file, write_json_atomic

log = logging.getLogger(__name__)

GALLERY_FILE = "gallery.json"
THUMBS_DIR = "thumbs"
FORMAT_VERSION = 1
THUMBNAIL_SIZE = 96
THUMBNAIL_QUALITY = 85
VECTORS_RE = re.compile(r"^vectors-(\d+)\.faiss$")


class GalleryError(RuntimeError):
    """A gallery on disk is missing, inconsistent or corrupt."""


class UnknownItemError(KeyError):
    """No gallery item has this id."""

    def __init__(self, item_id: int):
        super().__init__(item_id)
        self.item_id = item_id

    def __str__(self) -> str:
        return f"no gallery item has id {self.item_id}"


# --- FAISS in small functions: float32 contiguous arrays in, (D, I) out --------------------------


def as_vectors(x: np.ndarray, dim: int) -> np.ndarray:
    """[n, dim] float32 C-contiguous, finite; raise ValueError otherwise."""
    arr = np.ascontiguousarray(x, dtype=np.float32)
    if arr.ndim != 2 or arr.shape[1] != dim:
        raise ValueError(f"expected vectors of shape [n, {dim}], got {list(np.shape(x))}")
    if not np.isfinite(arr).all():
        raise ValueError("vectors contain NaN or infinity")
    return arr


def as_ids(ids: Sequence[int] | np.ndarray, count: int) -> np.ndarray:
    arr = np.ascontiguousarray(ids, dtype=np.int64)
    if arr.shape != (count,):
        raise ValueError(f"expected {count} ids, got shape {list(arr.shape)}")
    if (arr < 0).any():
        raise ValueError("ids must be non-negative")
    if len(np.unique(arr)) != count:
        raise ValueError("ids must be unique")
    return arr


def new_index(dim: int) -> faiss.IndexIDMap2:
    """Exact L2 search with our own int64 ids (IndexIDMap2 also reconstructs a vector by id)."""
    return faiss.IndexIDMap2(faiss.IndexFlatL2(dim))


def add_vectors(index: faiss.Index, vectors: np.ndarray, ids: Sequence[int] | np.ndarray) -> None:
    vectors = as_vectors(vectors, index.d)
    index.add_with_ids(vectors, as_ids(ids, len(vectors)))


def remove_vectors(index: faiss.Index, ids: Sequence[int] | np.ndarray) -> int:
    """Remove ``ids``; returns how many were present."""
    return int(index.remove_ids(np.ascontiguousarray(ids, dtype=np.int64)))


def search_index(index: faiss.Index, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(squared L2 [n, k], ids [n, k]); where fewer than k items exist the ids are -1."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    return index.search(as_vectors(queries, index.d), k)


@functools.cache
def _gpu_resources() -> faiss.StandardGpuResources:
    return faiss.StandardGpuResources()  # one per process: each reserves GPU scratch memory


def to_search_device(index: faiss.Index) -> faiss.Index:
    """A GPU copy of ``index`` when FAISS sees a GPU (a faiss-gpu build), else ``index`` itself;
    the CPU copy is kept for persistence and reconstruction either way."""
    if faiss.get_num_gpus() > 0:
        return faiss.index_cpu_to_gpu(_gpu_resources(), 0, index)
    return index


def euclidean(squared: np.ndarray) -> np.ndarray:
    """Squared L2 as FAISS reports it -> Euclidean distance (rounding can make it slightly < 0)."""
    return np.sqrt(np.maximum(squared, 0.0))


def make_thumbnail(image: Image.Image, size: int = THUMBNAIL_SIZE) -> bytes:
    """A JPEG whose longer side is at most ``size`` px."""
    thumb = image.convert("RGB")
    thumb.thumbnail((size, size), Image.Resampling.BILINEAR)
    out = io.BytesIO()
    thumb.save(out, format="JPEG", quality=THUMBNAIL_QUALITY)
    return out.getvalue()


# --- the gallery ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class GalleryItem:
    id: int
    label: str
    source: str | None
    thumbnail: str  # file name under thumbs/


@dataclass(frozen=True)
class Neighbor:
    item: GalleryItem
    distance: float  # Euclidean


@dataclass(frozen=True)
class _Snapshot:
    generation: int
    next_id: int
    cpu_index: faiss.Index
    search_index: faiss.Index
    items: dict[int, GalleryItem]


def _write_file_durably(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    fsync_path(tmp)
    os.replace(tmp, path)


class Gallery:
    """A persistent gallery in ``directory``. Thread-safe: changes are serialised by a lock and
    each returns only once it is on disk; searches read an immutable snapshot."""

    def __init__(self, directory: Path, dim: int, snapshot: _Snapshot):
        self.directory = Path(directory)
        self.dim = dim
        self._snapshot = snapshot
        self._write_lock = threading.Lock()

    # construction

    @classmethod
    def empty(cls, directory: Path, dim: int) -> Gallery:
        """An empty gallery for ``directory``; nothing is written until the first change."""
        index = new_index(dim)
        return cls(directory, dim, _Snapshot(0, 0, index, to_search_device(index), {}))

    @classmethod
    def load(cls, directory: Path) -> Gallery:
        directory = Path(directory)
        meta_path = directory / GALLERY_FILE
        try:
            meta = json.loads(meta_path.read_text())
        except FileNotFoundError as exc:
            raise GalleryError(f"{directory} holds no {GALLERY_FILE}") from exc
        except ValueError as exc:
            raise GalleryError(f"{meta_path} is not valid JSON: {exc}") from exc
        if meta.get("format") != FORMAT_VERSION:
            raise GalleryError(f"{meta_path}: unsupported gallery format {meta.get('format')!r}")
        dim = int(meta["dim"])
        vectors_path = directory / meta["vectors_file"]
        if not vectors_path.is_file():
            raise GalleryError(f"{vectors_path} is missing")
        if sha256_file(vectors_path) != meta["vectors_sha256"]:
            raise GalleryError(f"{vectors_path} does not match the sha256 in {GALLERY_FILE}")
        index = faiss.read_index(str(vectors_path))
        items = {int(row["id"]): GalleryItem(**row) for row in meta["items"]}
        stored_ids = faiss.vector_to_array(index.id_map) if index.ntotal else np.empty(0, np.int64)
        if index.d != dim or set(stored_ids.tolist()) != set(items) or len(stored_ids) != len(items):
            raise GalleryError(f"{directory}: the vectors and the item list disagree")
        snapshot = _Snapshot(int(meta["generation"]), int(meta["next_id"]), index, to_search_device(index), items)
        gallery = cls(directory, dim, snapshot)
        gallery._remove_leftovers()
        log.info("loaded gallery %s: %d items, dim %d", directory, len(items), dim)
        return gallery

    @classmethod
    def open(cls, directory: Path, dim: int) -> Gallery:
        """Load the gallery in ``directory``, or an empty one if none was written yet."""
        if (Path(directory) / GALLERY_FILE).exists():
            gallery = cls.load(directory)
            if gallery.dim != dim:
                raise GalleryError(f"{directory} holds {gallery.dim}-d vectors, the model makes {dim}-d")
            return gallery
        return cls.empty(directory, dim)

    # reading

    def __len__(self) -> int:
        return len(self._snapshot.items)

    def __contains__(self, item_id: object) -> bool:
        return item_id in self._snapshot.items

    def items(self) -> list[GalleryItem]:
        return list(self._snapshot.items.values())

    def get(self, item_id: int) -> GalleryItem:
        try:
            return self._snapshot.items[item_id]
        except KeyError:
            raise UnknownItemError(item_id) from None

    def vector(self, item_id: int) -> np.ndarray:
        snapshot = self._snapshot
        if item_id not in snapshot.items:
            raise UnknownItemError(item_id)
        return snapshot.cpu_index.reconstruct(int(item_id))

    def thumbnail_path(self, item_id: int) -> Path:
        return self.directory / THUMBS_DIR / self.get(item_id).thumbnail

    def search(self, queries: np.ndarray, k: int, exclude: Sequence[int] = ()) -> list[list[Neighbor]]:
        """The ``k`` nearest items of each query row, nearest first, leaving out ids in ``exclude``."""
        snapshot = self._snapshot
        if not snapshot.items:
            return [[] for _ in range(len(as_vectors(queries, self.dim)))]
        wanted = min(k + len(exclude), len(snapshot.items))
        squared, ids = search_index(snapshot.search_index, queries, wanted)
        skip = set(exclude)
        results = []
        for row_d, row_i in zip(euclidean(squared), ids, strict=True):
            hits = [
                Neighbor(snapshot.items[int(i)], float(d))
                for d, i in zip(row_d, row_i, strict=True)
                if i >= 0 and int(i) not in skip
            ]
            results.append(hits[:k])
        return results

    # changing

    def add(
        self,
        vectors: np.ndarray,
        labels: Sequence[str],
        sources: Sequence[str | None],
        thumbnails: Sequence[bytes],
    ) -> list[GalleryItem]:
        """Add items (one row, label, source and thumbnail JPEG each); returns them with new ids
        once they are on disk. Ids are never reused."""
        vectors = as_vectors(vectors, self.dim)
        count = len(vectors)
        if not count or not (len(labels) == len(sources) == len(thumbnails) == count):
            raise ValueError("add needs one label, source and thumbnail per vector, and at least one vector")
        with self._write_lock:
            old = self._snapshot
            ids = list(range(old.next_id, old.next_id + count))
            new_items = [
                GalleryItem(id=i, label=label, source=source, thumbnail=f"{i}.jpg")
                for i, label, source in zip(ids, labels, sources, strict=True)
            ]
            index = faiss.clone_index(old.cpu_index)
            add_vectors(index, vectors, ids)
            thumbs = self.directory / THUMBS_DIR
            thumbs.mkdir(parents=True, exist_ok=True)
            for item, jpeg in zip(new_items, thumbnails, strict=True):
                _write_file_durably(thumbs / item.thumbnail, jpeg)
            fsync_path(thumbs)
            items = dict(old.items) | {item.id: item for item in new_items}
            self._commit(old, index, items, old.next_id + count)
            return new_items

    def remove(self, item_id: int) -> GalleryItem:
        """Remove one item; returns it once the removal is on disk."""
        with self._write_lock:
            old = self._snapshot
            item = old.items.get(item_id)
            if item is None:
                raise UnknownItemError(item_id)
            index = faiss.clone_index(old.cpu_index)
            remove_vectors(index, [item_id])
            items = {i: it for i, it in old.items.items() if i != item_id}
            self._commit(old, index, items, old.next_id)
            (self.directory / THUMBS_DIR / item.thumbnail).unlink(missing_ok=True)
            return item

    def _commit(self, old: _Snapshot, index: faiss.Index, items: dict[int, GalleryItem], next_id: int) -> None:
        generation = old.generation + 1
        vectors_file = f"vectors-{generation}.faiss"
        self.directory.mkdir(parents=True, exist_ok=True)
        # unreferenced until gallery.json names it, so it can be written under its final name
        vectors_path = self.directory / vectors_file
        faiss.write_index(index, str(vectors_path))
        fsync_path(vectors_path)
        meta = {
            "format": FORMAT_VERSION,
            "dim": self.dim,
            "metric": "l2",
            "generation": generation,
            "next_id": next_id,
            "vectors_file": vectors_file,
            "vectors_sha256": sha256_file(vectors_path),
            "items": [asdict(item) for item in sorted(items.values(), key=lambda it: it.id)],
        }
        write_json_atomic(self.directory / GALLERY_FILE, meta)  # the commit point
        self._snapshot = _Snapshot(generation, next_id, index, to_search_device(index), items)
        (self.directory / f"vectors-{old.generation}.faiss").unlink(missing_ok=True)

    def _remove_leftovers(self) -> None:
        """Delete what a crashed change left behind: other vector files, temp files, thumbnails
        of items that are not in the gallery."""
        current = f"vectors-{self._snapshot.generation}.faiss"
        for path in self.directory.iterdir():
            if (VECTORS_RE.match(path.name) and path.name != current) or path.name.endswith(".tmp"):
                path.unlink(missing_ok=True)
        thumbs = self.directory / THUMBS_DIR
        if thumbs.is_dir():
            keep = {item.thumbnail for item in self._snapshot.items.values()}
            for path in thumbs.iterdir():
                if path.name not in keep:
                    path.unlink(missing_ok=True)
