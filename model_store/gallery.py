"""The retrieval gallery of a model version: fc7 vectors in FAISS, item metadata and thumbnails.

Layout, in ``<version_dir>/index/``::

    gallery.json                 format, dim, next id, the base files' names and sha256s, the items
    vectors-<generation>.faiss   the base index (``flat``: IndexIDMap2 over IndexFlatL2, int64 ids)
    rerank-<generation>.faiss    only for the approximate index kinds: the SQ8 rerank store
    changes-<generation>.log     the changes made since the base was written (model_store/change_log.py)
    thumbs/<id>.jpg              small JPEG thumbnails

Index kinds (``model_store/index_kinds.py``): ``flat`` (the default, exact), or ``sq_fp16``,
``ivf_pq``, ``opq_ivf_pq``, ``binary`` for large galleries, stored as ``index_kind`` and
``index_params`` (nlist, nprobe, rerank depth, ...) and, for the approximate kinds, ``rerank_file``
and ``rerank_sha256``; a flat gallery has none of these keys. Trainable kinds are trained on the
first vectors added (at least ``index_kinds.MIN_TRAIN``, else ValueError).

Formats: 1 (flat) and 2 (other kinds) are galleries without a change log; they are still read, and
their first change rewrites them as format 3. Format 3 (every kind) names its log in
``changes_file``. Code that knows only formats 1 and 2 refuses format 3 instead of loading the base
without the log's changes (and later deleting the log as a leftover).

A change costs an fsynced append, not a rewrite. An add writes and fsyncs its thumbnails, then
appends one record (the items and their float32 vectors) to ``changes-<g>.log``; a remove appends
the id. The fsynced append is the commit point: only then is the change applied in memory and the
call returns, and ``gallery.json`` is not touched. Loading reads the base (checksums verified) and
replays the log; a record cut short or failing its CRC (a crash mid-append, never acknowledged)
ends it, with a warning. Loading never writes the log (a reader may be a read replica while the
writer appends): the next append is written at the end of the last whole record and cuts off
whatever followed it.

Compaction folds the log into a new base: the base index is cloned, the removed items taken out and
the added ones put in, ``vectors-<g+1>.faiss`` (and ``rerank-<g+1>.faiss``) written and fsynced, then
``gallery.json`` replaced atomically (naming the new, still absent, ``changes-<g+1>.log``) as the
commit point, and the old generation's files, its log included, deleted. The change that takes the
log past ``Compaction`` (default: more than max(1000, 2% of the base's items) records, or more than
64 MiB) compacts instead of appending, synchronously; so does the first change of a gallery without
a base (the first add, which also trains a trainable kind, so a bulk build is one base write) or
without a log (formats 1 and 2). After a crash (kill -9 included) the folder holds every
acknowledged change and no part of another (the one in flight is there whole or not at all);
unreferenced leftovers (other generations' files, temporary
files, thumbnails of items not in the gallery) are removed the next time it is opened.

In memory a snapshot is immutable: searches read the current one and never wait for a change,
which builds the next snapshot and swaps it in once on disk (a failed change leaves the gallery as
it was). The base index is shared by every snapshot until a compaction; the log's adds are exact
float32 rows in a small append-only "delta" (searched exhaustively next to the base and merged by
distance; ``vector()`` is exact for them until the compaction encodes them like the rest), and
the removed base items are a tombstone set filtered out of the base's results (FAISS IDSelector,
or asking for more results where the first stage cannot take one). Ids are never reused (but for
those of an add that a crash cut off before it was acknowledged).

Distances: FAISS returns squared L2; ``Gallery.search`` reports the Euclidean distance
(the square root), as in the paper's Figure 4.

Only numpy, faiss and Pillow are used here (the service must not need torch). One process writes
a gallery at a time (``model_store/writer_lock.py``): each change holds ``writer.lock`` in the folder
while it writes, and fails with GalleryConflict when another process holds it for longer than
``WRITER_WAIT_S``, or when the folder changed on disk since this process last read or wrote it (its
``gallery.json`` or log is not the one it knows: appending at its old offset would cut off the
other process's changes). The cleanup of leftovers at load runs only in a writable folder, under
the lock, and only if nothing changed since the load read it.
"""

from __future__ import annotations

import functools
import io
import json
import logging
import os
import re
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import faiss
import numpy as np
from PIL import Image

from model_store import change_log
from model_store.index_kinds import VectorIndex, check_kind
from model_store.store import fsync_path, sha256_file, write_json_atomic
from model_store.writer_lock import WriterLock

log = logging.getLogger(__name__)

GALLERY_FILE = "gallery.json"
THUMBS_DIR = "thumbs"
FORMAT_VERSION = 1  # flat galleries without a change log (read, no longer written)
KINDS_FORMAT_VERSION = 2  # galleries of another index kind without a change log (read, no longer written)
WRITER_WAIT_S = 5.0  # how long a change waits for the writer lock (a loader's cleanup holds it briefly)
LOG_FORMAT_VERSION = 3  # a base plus a change log, every kind (format 1 and 2 readers refuse it)
THUMBNAIL_SIZE = 96
THUMBNAIL_QUALITY = 85
VECTORS_RE = re.compile(r"^(vectors|rerank)-(\d+)\.faiss$")
CHANGES_RE = re.compile(r"^changes-(\d+)\.log$")
# when the change log is folded into a new base (see ``Compaction``): more records than both of
# these, or more bytes than the last; the delta is searched exhaustively, and 64 MiB of 4096-d rows
# (4096 of them) scan in a few ms per query
COMPACT_RECORDS = 1000
COMPACT_FRACTION = 0.02
COMPACT_BYTES = 64 << 20
# with removed base items, a first stage is asked for this many results at most to filter them out
# itself (GPU flat searches take k <= 2048); beyond it the CPU index searches with an IDSelector
OVERFETCH_MAX = 2048


class GalleryError(RuntimeError):
    """A gallery on disk is missing, inconsistent or corrupt."""


class GalleryConflict(GalleryError):
    """Another process is changing this gallery, or changed it after this process loaded it."""


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
class Compaction:
    """When the change log is folded into a new base: once it would hold more than ``records``
    records and more than ``fraction`` of the base's item count, or more than ``max_bytes``."""

    records: int = COMPACT_RECORDS
    fraction: float = COMPACT_FRACTION
    max_bytes: int = COMPACT_BYTES

    def due(self, records: int, nbytes: int, base_items: int) -> bool:
        return records > max(self.records, self.fraction * base_items) or nbytes > self.max_bytes


class _Rows:
    """Append-only float32 rows and their (increasing) ids, shared by snapshots: a snapshot reads
    its first ``n`` rows, which are never written again (a change writes past them, or a copy)."""

    def __init__(self, dim: int, capacity: int = 0):
        self.vectors = np.empty((capacity, dim), np.float32)
        self.ids = np.empty(capacity, np.int64)

    def extended(self, n: int, vectors: np.ndarray, ids: np.ndarray) -> _Rows:
        """Rows [0, n) followed by ``vectors``: this buffer if it has room, else a bigger copy."""
        end = n + len(vectors)
        rows = self
        if end > len(self.ids):
            rows = _Rows(self.vectors.shape[1], max(16, end, 2 * len(self.ids)))
            rows.vectors[:n], rows.ids[:n] = self.vectors[:n], self.ids[:n]
        rows.vectors[n:end], rows.ids[n:end] = vectors, ids
        return rows


@dataclass(frozen=True)
class _Snapshot:
    """The base (immutable until a compaction replaces it) plus the changes logged since."""

    generation: int
    next_id: int
    vectors: VectorIndex  # the base: .index is the CPU index, kept for persistence and reconstruction
    search_index: faiss.Index | None  # the first stage to search with (a GPU copy where there is one)
    items: dict[int, GalleryItem]  # the base's items, removed ones included
    changes_file: str | None = None  # None: no base with a log yet, the next change compacts
    rows: _Rows | None = None  # the vectors of the items added since the base (the delta)
    n_rows: int = 0
    added: dict[int, GalleryItem] = field(default_factory=dict)  # items added since, less those removed
    removed: frozenset[int] = frozenset()  # base items removed since (the tombstones)
    log_records: int = 0
    log_bytes: int = 0  # the end of the log's last committed record

    @property
    def cpu_index(self) -> faiss.Index:
        return self.vectors.index

    @property
    def size(self) -> int:
        return len(self.items) - len(self.removed) + len(self.added)

    def get(self, item_id: int) -> GalleryItem | None:
        item = self.added.get(item_id)
        if item is None and item_id not in self.removed:
            item = self.items.get(item_id)
        return item

    def delta(self) -> tuple[np.ndarray, np.ndarray]:
        """(vectors, ids) of the rows added since the base, rows of removed items included."""
        if self.rows is None:
            return np.empty((0, self.vectors.dim), np.float32), np.empty(0, np.int64)
        return self.rows.vectors[: self.n_rows], self.rows.ids[: self.n_rows]

    def live_items(self) -> dict[int, GalleryItem]:
        return {i: it for i, it in self.items.items() if i not in self.removed} | self.added

    @functools.cached_property
    def removed_ids(self) -> np.ndarray:
        return np.array(sorted(self.removed), np.int64)

    @functools.cached_property
    def selector(self) -> faiss.SearchParameters:
        """Search parameters that leave the removed base items out (CPU first stages but LSH)."""
        batch = faiss.IDSelectorBatch(self.removed_ids)
        not_removed = faiss.IDSelectorNot(batch)
        if "nprobe" in self.vectors.params:  # IVF: parameters given replace the index's own
            params = faiss.SearchParametersIVF(sel=not_removed, nprobe=int(self.vectors.params["nprobe"]))
        else:
            params = faiss.SearchParameters(sel=not_removed)
        params.referenced_objects = [batch, not_removed]  # SWIG holds raw pointers to them
        return params


class _Changes:
    """Changes being applied to a snapshot: a live change copies its small sets once, a replay
    applies every record of the log to one copy."""

    def __init__(self, snapshot: _Snapshot, dim: int):
        self.base = snapshot
        self.rows = snapshot.rows if snapshot.rows is not None else _Rows(dim)
        self.n_rows = snapshot.n_rows
        self.added = dict(snapshot.added)
        self.removed = set(snapshot.removed)
        self.next_id = snapshot.next_id

    def add(self, items: list[GalleryItem], vectors: np.ndarray) -> None:
        ids = np.array([item.id for item in items], np.int64)
        if ids[0] < self.next_id or (np.diff(ids) <= 0).any():
            raise ValueError(f"ids {ids.tolist()} are not new (next id {self.next_id})")
        self.rows = self.rows.extended(self.n_rows, vectors, ids)
        self.n_rows += len(ids)
        self.added.update((item.id, item) for item in items)
        self.next_id = int(ids[-1]) + 1

    def remove(self, item_id: int) -> GalleryItem:
        if item_id in self.added:
            return self.added.pop(item_id)
        if item_id in self.removed or item_id not in self.base.items:
            raise UnknownItemError(item_id)
        self.removed.add(item_id)
        return self.base.items[item_id]

    def snapshot(self, records: int, nbytes: int) -> _Snapshot:
        return replace(
            self.base, next_id=self.next_id, rows=self.rows, n_rows=self.n_rows, added=self.added,
            removed=frozenset(self.removed), log_records=records, log_bytes=nbytes,
        )  # fmt: skip


def _search_copy(vectors: VectorIndex) -> faiss.Index | None:
    """Flat galleries search a GPU copy when FAISS has a GPU; the other kinds search on the CPU."""
    if vectors.index is None:
        return None
    return to_search_device(vectors.index) if vectors.kind == "flat" else vectors.index


def _search_base(snapshot: _Snapshot, queries: np.ndarray, wanted: int) -> tuple[np.ndarray, np.ndarray]:
    """(squared L2, ids) of the base's ``wanted`` nearest items that were not removed; removed ones
    may still be among the results (the caller drops them), but never crowd out live ones."""
    vi = snapshot.vectors
    first = vi.trained_index if snapshot.search_index is None else snapshot.search_index
    if not snapshot.removed:
        if vi.kind == "flat":
            return search_index(first, queries, wanted)
        return vi.search(queries, wanted, first)
    depth = wanted if vi.rerank is None else max(int(vi.params["rerank"]), 4 * wanted)
    more = min(depth + len(snapshot.removed), vi.ntotal)
    if more <= OVERFETCH_MAX or vi.kind == "binary":  # IndexLSH takes no IDSelector
        squared, found = first.search(queries, more)
        if vi.rerank is not None:
            found = _drop(found, snapshot.removed_ids, depth)
    else:
        squared, found = vi.trained_index.search(queries, depth, params=snapshot.selector)
    if vi.rerank is None:
        return squared, found
    return vi.rerank_candidates(queries, found, wanted)


def _drop(found: np.ndarray, removed_ids: np.ndarray, keep: int) -> np.ndarray:
    """Candidate ids [n, c] without the removed ones (order kept), -1 padded, ``keep`` columns."""
    gone = np.isin(found, removed_ids) | (found < 0)
    order = np.argsort(gone, axis=1, kind="stable")
    return np.take_along_axis(np.where(gone, -1, found), order, axis=1)[:, :keep]


def _search_delta(snapshot: _Snapshot, queries: np.ndarray, wanted: int) -> tuple[np.ndarray, np.ndarray]:
    """(squared L2, ids) of the exact nearest rows of the delta (rows of removed items included)."""
    vectors, ids = snapshot.delta()
    n = len(ids)
    squared, row = faiss.knn(queries, vectors, min(n, wanted + n - len(snapshot.added)))
    return squared, np.where(row >= 0, ids[np.maximum(row, 0)], -1)


def _write_file_durably(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    fsync_path(tmp)
    os.replace(tmp, path)


class Gallery:
    """A persistent gallery in ``directory``. Thread-safe: changes are serialised by a lock and
    each returns only once it is on disk; searches read an immutable snapshot."""

    def __init__(self, directory: Path, dim: int, snapshot: _Snapshot, compaction: Compaction | None = None):
        self.directory = Path(directory)
        self.dim = dim
        self.compaction = compaction or Compaction()
        self._snapshot = snapshot
        self._write_lock = threading.Lock()
        self._compact_next = False  # set when gallery.json may name a generation newer than the snapshot
        self._writer = WriterLock(self.directory)
        self._seen = self._disk_state()  # the files as this process last read or wrote them

    # construction

    @property
    def index_kind(self) -> str:
        return self._snapshot.vectors.kind

    @property
    def index_params(self) -> dict:
        return dict(self._snapshot.vectors.params)

    @property
    def next_id(self) -> int:
        """The id the next item added will get."""
        return self._snapshot.next_id

    @classmethod
    def empty(
        cls,
        directory: Path,
        dim: int,
        index_kind: str = "flat",
        index_params: dict | None = None,
        compaction: Compaction | None = None,
    ) -> Gallery:
        """An empty gallery for ``directory``; nothing is written until the first change. A
        trainable ``index_kind`` is trained on the vectors of the first ``add`` (see index_kinds)."""
        vectors = VectorIndex.new(check_kind(index_kind), dim, index_params)
        return cls(directory, dim, _Snapshot(0, 0, vectors, _search_copy(vectors), {}), compaction)

    @classmethod
    def load(cls, directory: Path, compaction: Compaction | None = None) -> Gallery:
        directory = Path(directory)
        meta_path = directory / GALLERY_FILE
        seen_meta = _stat(meta_path)  # before reading: a change after this point is a conflict later
        try:
            meta = json.loads(meta_path.read_text())
        except FileNotFoundError as exc:
            raise GalleryError(f"{directory} holds no {GALLERY_FILE}") from exc
        except ValueError as exc:
            raise GalleryError(f"{meta_path} is not valid JSON: {exc}") from exc
        if meta.get("format") not in (FORMAT_VERSION, KINDS_FORMAT_VERSION, LOG_FORMAT_VERSION):
            raise GalleryError(f"{meta_path}: unsupported gallery format {meta.get('format')!r}")
        dim, generation = int(meta["dim"]), int(meta["generation"])
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
            vectors.trained_index.d != dim
            or set(stored_ids.tolist()) != set(items)
            or len(stored_ids) != len(items)
            or (vectors.rerank is not None and vectors.ntotal != len(items))
        ):
            raise GalleryError(f"{directory}: the vectors and the item list disagree")
        changes_file = meta.get("changes_file")
        if meta["format"] == LOG_FORMAT_VERSION and changes_file != f"changes-{generation}.log":
            raise GalleryError(f"{meta_path}: expected changes_file changes-{generation}.log, got {changes_file!r}")
        snapshot = _Snapshot(generation, int(meta["next_id"]), vectors, _search_copy(vectors), items, changes_file)
        seen_log = _stat(directory / changes_file) if changes_file else None
        if changes_file:
            snapshot = _replay(directory / changes_file, snapshot, dim)
        gallery = cls(directory, dim, snapshot, compaction)
        gallery._seen = (seen_meta, seen_log)
        gallery._clean_up()
        log.info(
            "loaded gallery %s: %d items (%d changes logged since the base), dim %d, index kind %s",
            directory, snapshot.size, snapshot.log_records, dim, kind,
        )  # fmt: skip
        return gallery

    @classmethod
    def open(cls, directory: Path, dim: int, compaction: Compaction | None = None) -> Gallery:
        """Load the gallery in ``directory``, or an empty one if none was written yet."""
        if (Path(directory) / GALLERY_FILE).exists():
            gallery = cls.load(directory, compaction)
            if gallery.dim != dim:
                raise GalleryError(f"{directory} holds {gallery.dim}-d vectors, the model makes {dim}-d")
            return gallery
        return cls.empty(directory, dim, compaction=compaction)

    # reading

    def __len__(self) -> int:
        return self._snapshot.size

    def __contains__(self, item_id: object) -> bool:
        return self._snapshot.get(item_id) is not None  # type: ignore[arg-type]

    def items(self) -> list[GalleryItem]:
        return list(self._snapshot.live_items().values())

    def get(self, item_id: int) -> GalleryItem:
        item = self._snapshot.get(item_id)
        if item is None:
            raise UnknownItemError(item_id)
        return item

    def vector(self, item_id: int) -> np.ndarray:
        """The stored vector of an item: exact for ``flat`` and for items added since the last
        compaction; else an approximate reconstruction (half precision for ``sq_fp16``, the 8-bit
        rerank copy for the others)."""
        snapshot = self._snapshot
        if snapshot.get(item_id) is None:
            raise UnknownItemError(item_id)
        if item_id in snapshot.added:
            vectors, ids = snapshot.delta()
            return vectors[int(np.searchsorted(ids, item_id))].copy()
        return snapshot.vectors.reconstruct(int(item_id))

    def thumbnail_path(self, item_id: int) -> Path:
        return self.directory / THUMBS_DIR / self.get(item_id).thumbnail

    def search(self, queries: np.ndarray, k: int, exclude: Sequence[int] = ()) -> list[list[Neighbor]]:
        """The ``k`` nearest items of each query row, nearest first, leaving out ids in ``exclude``."""
        snapshot = self._snapshot
        queries = as_vectors(queries, self.dim)
        if not snapshot.size:
            return [[] for _ in range(len(queries))]
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        skip = set(exclude)
        parts = []
        in_base = snapshot.vectors.ntotal - len(snapshot.removed)
        if in_base:
            parts.append(_search_base(snapshot, queries, min(k + len(skip), in_base)))
        if snapshot.added:
            parts.append(_search_delta(snapshot, queries, k + len(skip)))
        squared, ids = (np.concatenate(part, axis=1) for part in zip(*parts, strict=True))
        if len(parts) > 1:  # merge by distance (each part is sorted already)
            order = np.argsort(squared, axis=1, kind="stable")
            squared, ids = np.take_along_axis(squared, order, 1), np.take_along_axis(ids, order, 1)
        results = []
        for row_d, row_i in zip(euclidean(squared), ids, strict=True):
            hits = []
            for d, i in zip(row_d.tolist(), row_i.tolist(), strict=True):
                item = snapshot.get(i) if i >= 0 and i not in skip else None
                if item is not None:
                    hits.append(Neighbor(item, d))
                    if len(hits) == k:
                        break
            results.append(hits)
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
        with self._write_lock, self._as_writer():
            old = self._snapshot
            ids = as_ids(range(old.next_id, old.next_id + count), count)
            new_items = [
                GalleryItem(id=int(i), label=label, source=source, thumbnail=f"{i}.jpg")
                for i, label, source in zip(ids, labels, sources, strict=True)
            ]
            # a compaction's index is made before any file is written: training may refuse the vectors
            index = self._compacted(old, vectors, ids) if self._compacts(old, vectors.nbytes) else None
            thumbs = self.directory / THUMBS_DIR
            thumbs.mkdir(parents=True, exist_ok=True)
            for item, jpeg in zip(new_items, thumbnails, strict=True):
                _write_file_durably(thumbs / item.thumbnail, jpeg)
            fsync_path(thumbs)
            if index is not None:
                items = old.live_items() | {item.id: item for item in new_items}
                self._commit(old, index, items, old.next_id + count)
            else:
                changes = _Changes(old, self.dim)
                changes.add(new_items, vectors)
                self._append(old, change_log.encode_add([asdict(it) for it in new_items], vectors), changes)
            return new_items

    def remove(self, item_id: int) -> GalleryItem:
        """Remove one item; returns it once the removal is on disk."""
        with self._write_lock:
            old = self._snapshot
            changes = _Changes(old, self.dim)
            item = changes.remove(item_id)  # an unknown id needs no lock
            with self._as_writer():
                if self._compacts(old, 0):
                    new = changes.snapshot(0, 0)
                    self._commit(old, self._compacted(new), new.live_items(), new.next_id)
                else:
                    self._append(old, change_log.encode_remove(int(item_id)), changes)
                (self.directory / THUMBS_DIR / item.thumbnail).unlink(missing_ok=True)
            return item

    def _compacts(self, old: _Snapshot, vector_bytes: int) -> bool:
        """Whether the next change makes a new base rather than a log record."""
        if old.changes_file is None or not old.vectors.is_trained or self._compact_next:
            return True  # no base, one without a log, or a compaction that failed at its commit point
        return self.compaction.due(old.log_records + 1, old.log_bytes + vector_bytes, len(old.items))

    def _compacted(
        self, snapshot: _Snapshot, vectors: np.ndarray | None = None, ids: np.ndarray | None = None
    ) -> VectorIndex:
        """A copy of the base index with the snapshot's changes (and ``vectors``) applied; trains a
        trainable kind that is not yet trained."""
        index = snapshot.vectors.clone()
        if snapshot.removed:
            index.remove(snapshot.removed_ids)
        new_vectors, new_ids = [], []
        if snapshot.added:
            delta_vectors, delta_ids = snapshot.delta()
            live = np.isin(delta_ids, np.fromiter(snapshot.added, np.int64, len(snapshot.added)))
            new_vectors.append(delta_vectors[live])
            new_ids.append(delta_ids[live])
        if vectors is not None:
            assert ids is not None, "vectors come with their ids"
            new_vectors.append(vectors)
            new_ids.append(ids)
        if new_ids:
            joined = new_vectors[0] if len(new_vectors) == 1 else np.concatenate(new_vectors)
            index.add(joined, np.concatenate(new_ids))
        return index

    def _append(self, old: _Snapshot, record: bytes, changes: _Changes) -> None:
        """Commit a change: append its record to the log and fsync it, then swap in the snapshot."""
        assert old.changes_file is not None  # without a log, _compacts() made a new base instead
        try:
            end = change_log.append(self.directory / old.changes_file, old.log_bytes, old.generation, record)
        finally:
            self._seen = self._disk_state()  # this process's own write, even a failed one
        self._snapshot = changes.snapshot(old.log_records + 1, end)

    def _commit(self, old: _Snapshot, index: VectorIndex, items: dict[int, GalleryItem], next_id: int) -> None:
        """Write ``index`` as the base of generation g+1 with an empty log, and delete generation g."""
        generation = old.generation + 1
        vectors_file = f"vectors-{generation}.faiss"
        rerank_file = f"rerank-{generation}.faiss" if index.rerank is not None else None
        changes_file = f"changes-{generation}.log"
        self.directory.mkdir(parents=True, exist_ok=True)
        # unreferenced until gallery.json names them, so they can be written under their final names
        vectors_path = self.directory / vectors_file
        rerank_path = self.directory / rerank_file if rerank_file else None
        index.write(str(vectors_path), str(rerank_path) if rerank_path else None)
        fsync_path(vectors_path)
        (self.directory / changes_file).unlink(missing_ok=True)  # the new log starts empty
        meta = {
            "format": LOG_FORMAT_VERSION,
            "dim": self.dim,
            "metric": "l2",
            "generation": generation,
            "next_id": next_id,
            "vectors_file": vectors_file,
            "vectors_sha256": sha256_file(vectors_path),
        }
        if index.kind != "flat":
            meta |= {"index_kind": index.kind, "index_params": index.params}
        if rerank_path is not None:
            fsync_path(rerank_path)
            meta |= {"rerank_file": rerank_file, "rerank_sha256": sha256_file(rerank_path)}
        meta["changes_file"] = changes_file
        meta["items"] = [asdict(item) for item in sorted(items.values(), key=lambda it: it.id)]
        try:
            write_json_atomic(self.directory / GALLERY_FILE, meta)  # the commit point
        except BaseException:
            self._compact_next = True  # it may have replaced gallery.json: never append to the old log again
            self._seen = self._disk_state()
            raise
        self._compact_next = False
        self._snapshot = _Snapshot(generation, next_id, index, _search_copy(index), items, changes_file)
        self._seen = self._disk_state()
        for stale in (f"vectors-{old.generation}.faiss", f"rerank-{old.generation}.faiss", old.changes_file):
            if stale:
                (self.directory / stale).unlink(missing_ok=True)
        if old.log_records:
            message = "gallery %s: %d logged changes compacted into generation %d"
            log.info(message, self.directory, old.log_records, generation)

    def _disk_state(self) -> tuple[tuple[int, ...] | None, tuple[int, ...] | None]:
        changes_file = self._snapshot.changes_file
        return _stat(self.directory / GALLERY_FILE), _stat(self.directory / changes_file) if changes_file else None

    @contextmanager
    def _as_writer(self) -> Iterator[None]:
        """Hold the folder's writer lock, with the folder as this process last saw it (or raise
        GalleryConflict)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        if not self._writer.try_acquire(wait_s=WRITER_WAIT_S):
            raise GalleryConflict(f"another process is changing the gallery in {self.directory}")
        try:
            if self._disk_state() != self._seen:
                raise GalleryConflict(
                    f"the gallery in {self.directory} was changed by another process after this one read it;"
                    " load it again to change it (one process writes a gallery at a time)"
                )
            yield
        finally:
            self._writer.release()

    def _clean_up(self) -> None:
        """Remove leftovers, unless the folder is read-only, another process holds its lock, or
        it changed since this process read it."""
        if not os.access(self.directory, os.W_OK) or not self._writer.try_acquire():
            return
        try:
            if self._disk_state() == self._seen:
                self._remove_leftovers()
        finally:
            self._writer.release()

    def _remove_leftovers(self) -> None:
        """Delete what a crashed change left behind: other generations' files, temp files,
        thumbnails of items that are not in the gallery."""
        snapshot = self._snapshot
        generation = snapshot.generation
        current = {f"vectors-{generation}.faiss", f"rerank-{generation}.faiss", snapshot.changes_file}
        for path in self.directory.iterdir():
            ours = VECTORS_RE.match(path.name) or CHANGES_RE.match(path.name)
            if (ours and path.name not in current) or path.name.endswith(".tmp"):
                _discard(path)
        thumbs = self.directory / THUMBS_DIR
        if thumbs.is_dir():
            keep = {item.thumbnail for item in snapshot.live_items().values()}
            for path in thumbs.iterdir():
                if path.name not in keep:
                    _discard(path)


def _stat(path: Path) -> tuple[int, ...] | None:
    """What tells one version of a file from the next: inode (a replace), size and mtime (an append)."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns


def _discard(path: Path) -> None:
    """Remove a leftover; where that is not allowed (a read replica's read-only mount) keep it: the
    writer removes it when it next loads."""
    try:
        path.unlink(missing_ok=True)
    except OSError as exc:
        log.debug("kept leftover %s: %s", path, exc)


def _replay(path: Path, snapshot: _Snapshot, dim: int) -> _Snapshot:
    """``snapshot`` (a base just read) with the changes of its log at ``path`` applied."""
    try:
        records, end = change_log.read(path, snapshot.generation, dim)
        changes = _Changes(snapshot, dim)
        for record in records:
            if isinstance(record, change_log.AddRecord):
                changes.add([GalleryItem(**row) for row in record.items], record.vectors)
            else:
                changes.remove(record.id)
    except (change_log.ChangeLogError, UnknownItemError, TypeError, ValueError) as exc:
        raise GalleryError(f"{path}: {exc}") from exc
    return changes.snapshot(len(records), end)
