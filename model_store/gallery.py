"""The retrieval gallery of a model version: fc7 vectors in FAISS, item metadata and thumbnails.

Layout, in ``<version_dir>/index/``::

    gallery.json             format, dim, next id, the vectors file's name and sha256, the items
    vectors-<generation>.faiss   IndexIDMap2 over IndexFlatL2 (int64 ids)
    rerank-<generation>.faiss    only for the approximate index kinds: the SQ8 rerank store
    thumbs/<id>.jpg          small JPEG thumbnails

Index kinds (``model_store/index_kinds.py``): ``flat`` (the default, exact, written exactly as
before: format 1, no kind keys), or ``sq_fp16``, ``ivf_pq``, ``opq_ivf_pq``, ``binary`` for large
galleries. A gallery of another kind is written as format 2 with ``index_kind`` and
``index_params`` (nlist, nprobe, rerank depth, ...) and, for the approximate kinds, ``rerank_file``
and ``rerank_sha256``; code that only knows format 1 refuses it instead of misreading it. Trainable
kinds are trained on the first vectors added (at least ``index_kinds.MIN_TRAIN``, else ValueError).

``gallery.json`` is the commit point. A change writes a new ``vectors-<g+1>.faiss`` and the new
thumbnails (each fsynced), then replaces ``gallery.json`` atomically, and only then returns; so
after a crash (kill -9 included) the folder holds the whole old gallery or the whole new one, and
the unreferenced leftovers are removed the next time it is opened. Each change rewrites the
vector file (16 KiB per item), which is fine for galleries of thousands of items.

Distances: FAISS returns squared L2; ``Gallery.search`` reports the Euclidean distance
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

from model_store.index_kinds import VectorIndex, check_kind
from model_store.store import fsync_path, sha256_file, write_json_atomic

log = logging.getLogger(__name__)

GALLERY_FILE = "gallery.json"
THUMBS_DIR = "thumbs"
FORMAT_VERSION = 1  # flat galleries
KINDS_FORMAT_VERSION = 2  # galleries of another index kind (format 1 readers refuse them)
THUMBNAIL_SIZE = 96
THUMBNAIL_QUALITY = 85
VECTORS_RE = re.compile(r"^(vectors|rerank)-(\d+)\.faiss$")


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
    vectors: VectorIndex  # .index: the CPU index, kept for persistence and reconstruction
    search_index: faiss.Index | None  # the first stage to search with (a GPU copy where there is one)
    items: dict[int, GalleryItem]

    @property
    def cpu_index(self) -> faiss.Index:
        return self.vectors.index


def _search_copy(vectors: VectorIndex) -> faiss.Index | None:
    """Flat galleries search a GPU copy when FAISS has a GPU; the other kinds search on the CPU."""
    if vectors.index is None:
        return None
    return to_search_device(vectors.index) if vectors.kind == "flat" else vectors.index


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

    @property
    def index_kind(self) -> str:
        return self._snapshot.vectors.kind

    @property
    def index_params(self) -> dict:
        return dict(self._snapshot.vectors.params)

    @classmethod
    def empty(cls, directory: Path, dim: int, index_kind: str = "flat", index_params: dict | None = None) -> Gallery:
        """An empty gallery for ``directory``; nothing is written until the first change. A
        trainable ``index_kind`` is trained on the vectors of the first ``add`` (see index_kinds)."""
        vectors = VectorIndex.new(check_kind(index_kind), dim, index_params)
        return cls(directory, dim, _Snapshot(0, 0, vectors, _search_copy(vectors), {}))

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
        if meta.get("format") not in (FORMAT_VERSION, KINDS_FORMAT_VERSION):
            raise GalleryError(f"{meta_path}: unsupported gallery format {meta.get('format')!r}")
        dim = int(meta["dim"])
        try:
            kind = check_kind(meta.get("index_kind", "flat"))
        except ValueError as exc:
            raise GalleryError(f"{meta_path}: {exc}") from exc
        paths = [directory / meta["vectors_file"]]
        if meta.get("rerank_file"):
            paths.append(directory / meta["rerank_file"])
        for path, digest in zip(paths, [meta["vectors_sha256"], meta.get("rerank_sha256")], strict=False):
            if not path.is_file():
                raise GalleryError(f"{path} is missing")
            if sha256_file(path) != digest:
                raise GalleryError(f"{path} does not match the sha256 in {GALLERY_FILE}")
        rerank_path = str(paths[1]) if len(paths) > 1 else None
        vectors = VectorIndex.read(kind, meta.get("index_params", {}), str(paths[0]), rerank_path)
        items = {int(row["id"]): GalleryItem(**row) for row in meta["items"]}
        stored_ids = vectors.ids()
        if (
            vectors.index.d != dim
            or set(stored_ids.tolist()) != set(items)
            or len(stored_ids) != len(items)
            or (vectors.rerank is not None and vectors.index.ntotal != len(items))
        ):
            raise GalleryError(f"{directory}: the vectors and the item list disagree")
        snapshot = _Snapshot(int(meta["generation"]), int(meta["next_id"]), vectors, _search_copy(vectors), items)
        gallery = cls(directory, dim, snapshot)
        gallery._remove_leftovers()
        log.info("loaded gallery %s: %d items, dim %d, index kind %s", directory, len(items), dim, kind)
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
        """The stored vector of an item: exact for ``flat``; for the other kinds an approximate
        reconstruction (half precision for ``sq_fp16``, the 8-bit rerank copy for the others)."""
        snapshot = self._snapshot
        if item_id not in snapshot.items:
            raise UnknownItemError(item_id)
        return snapshot.vectors.reconstruct(int(item_id))

    def thumbnail_path(self, item_id: int) -> Path:
        return self.directory / THUMBS_DIR / self.get(item_id).thumbnail

    def search(self, queries: np.ndarray, k: int, exclude: Sequence[int] = ()) -> list[list[Neighbor]]:
        """The ``k`` nearest items of each query row, nearest first, leaving out ids in ``exclude``."""
        snapshot = self._snapshot
        if not snapshot.items:
            return [[] for _ in range(len(as_vectors(queries, self.dim)))]
        wanted = min(k + len(exclude), len(snapshot.items))
        if snapshot.vectors.kind == "flat":
            squared, ids = search_index(snapshot.search_index, queries, wanted)
        else:
            if k < 1:
                raise ValueError(f"k must be >= 1, got {k}")
            squared, ids = snapshot.vectors.search(as_vectors(queries, self.dim), wanted, snapshot.search_index)
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
            index = old.vectors.clone()
            index.add(vectors, as_ids(ids, count))  # a trainable kind is trained on the first add
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
            index = old.vectors.clone()
            index.remove(np.array([item_id], np.int64))
            items = {i: it for i, it in old.items.items() if i != item_id}
            self._commit(old, index, items, old.next_id)
            (self.directory / THUMBS_DIR / item.thumbnail).unlink(missing_ok=True)
            return item

    def _commit(self, old: _Snapshot, index: VectorIndex, items: dict[int, GalleryItem], next_id: int) -> None:
        generation = old.generation + 1
        vectors_file = f"vectors-{generation}.faiss"
        rerank_file = f"rerank-{generation}.faiss" if index.rerank is not None else None
        self.directory.mkdir(parents=True, exist_ok=True)
        # unreferenced until gallery.json names them, so they can be written under their final names
        vectors_path = self.directory / vectors_file
        rerank_path = self.directory / rerank_file if rerank_file else None
        index.write(str(vectors_path), str(rerank_path) if rerank_path else None)
        fsync_path(vectors_path)
        meta = {
            "format": FORMAT_VERSION,
            "dim": self.dim,
            "metric": "l2",
            "generation": generation,
            "next_id": next_id,
            "vectors_file": vectors_file,
            "vectors_sha256": sha256_file(vectors_path),
        }
        if index.kind != "flat":
            meta |= {"format": KINDS_FORMAT_VERSION, "index_kind": index.kind, "index_params": index.params}
        if rerank_path is not None:
            fsync_path(rerank_path)
            meta |= {"rerank_file": rerank_file, "rerank_sha256": sha256_file(rerank_path)}
        meta["items"] = [asdict(item) for item in sorted(items.values(), key=lambda it: it.id)]
        write_json_atomic(self.directory / GALLERY_FILE, meta)  # the commit point
        self._snapshot = _Snapshot(generation, next_id, index, _search_copy(index), items)
        for stale in (f"vectors-{old.generation}.faiss", f"rerank-{old.generation}.faiss"):
            (self.directory / stale).unlink(missing_ok=True)

    def _remove_leftovers(self) -> None:
        """Delete what a crashed change left behind: other vector files, temp files, thumbnails
        of items that are not in the gallery."""
        generation = self._snapshot.generation
        current = {f"vectors-{generation}.faiss", f"rerank-{generation}.faiss"}
        for path in self.directory.iterdir():
            if (VECTORS_RE.match(path.name) and path.name not in current) or path.name.endswith(".tmp"):
                path.unlink(missing_ok=True)
        thumbs = self.directory / THUMBS_DIR
        if thumbs.is_dir():
            keep = {item.thumbnail for item in self._snapshot.items.values()}
            for path in thumbs.iterdir():
                if path.name not in keep:
                    path.unlink(missing_ok=True)
