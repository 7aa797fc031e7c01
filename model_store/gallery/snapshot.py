"""A gallery in memory: an immutable snapshot of the base index plus the changes logged since,
and the copy-on-change that builds the next one (docs/gallery.md, "In memory")."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field, replace

import faiss
import numpy as np

from model_store.gallery.errors import UnknownItemError
from model_store.gallery.faiss_ops import to_search_device
from model_store.gallery.items import GalleryItem
from model_store.index_kinds import VectorIndex


class Rows:
    """Append-only float32 rows and their (increasing) ids, shared by snapshots: a snapshot reads
    its first ``n`` rows, which are never written again (a change writes past them, or a copy)."""

    def __init__(self, dim: int, capacity: int = 0):
        self.vectors = np.empty((capacity, dim), np.float32)
        self.ids = np.empty(capacity, np.int64)

    def extended(self, n: int, vectors: np.ndarray, ids: np.ndarray) -> Rows:
        """Rows [0, n) followed by ``vectors``: this buffer if it has room, else a bigger copy."""
        end = n + len(vectors)
        rows = self
        if end > len(self.ids):
            rows = Rows(self.vectors.shape[1], max(16, end, 2 * len(self.ids)))
            rows.vectors[:n], rows.ids[:n] = self.vectors[:n], self.ids[:n]
        rows.vectors[n:end], rows.ids[n:end] = vectors, ids
        return rows


def search_copy(vectors: VectorIndex) -> faiss.Index | None:
    """Flat galleries search a GPU copy when FAISS has a GPU; the other kinds search on the CPU."""
    if vectors.index is None:
        return None
    return to_search_device(vectors.index) if vectors.kind == "flat" else vectors.index


@dataclass(frozen=True)
class Snapshot:
    """The base (immutable until a compaction replaces it) plus the changes logged since."""

    generation: int
    next_id: int
    vectors: VectorIndex  # the base: .index is the CPU index, kept for persistence and reconstruction
    search_index: faiss.Index | None  # the first stage to search with (a GPU copy where there is one)
    items: dict[int, GalleryItem]  # the base's items, removed ones included
    changes_file: str | None = None  # None: no base with a log yet, the next change compacts
    rows: Rows | None = None  # the vectors of the items added since the base (the delta)
    n_rows: int = 0
    added: dict[int, GalleryItem] = field(default_factory=dict)  # items added since, less those removed
    removed: frozenset[int] = frozenset()  # base items removed since (the tombstones)
    log_records: int = 0
    log_bytes: int = 0  # the end of the log's last committed record

    @classmethod
    def of_base(
        cls,
        generation: int,
        next_id: int,
        vectors: VectorIndex,
        items: dict[int, GalleryItem],
        changes_file: str | None,
    ) -> Snapshot:
        """A base just read or written, with no changes since."""
        return cls(generation, next_id, vectors, search_copy(vectors), items, changes_file)

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

    def vector(self, item_id: int) -> np.ndarray:
        """The stored vector of a live item: its delta row, or the base index's reconstruction."""
        if self.get(item_id) is None:
            raise UnknownItemError(item_id)
        if item_id in self.added:
            vectors, ids = self.delta()
            return vectors[int(np.searchsorted(ids, item_id))].copy()
        return self.vectors.reconstruct(int(item_id))

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


class Changes:
    """Changes being applied to a snapshot: a live change copies its small sets once, a replay
    applies every record of the log to one copy."""

    def __init__(self, snapshot: Snapshot, dim: int):
        self.base = snapshot
        self.rows = snapshot.rows if snapshot.rows is not None else Rows(dim)
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

    def snapshot(self, records: int, nbytes: int) -> Snapshot:
        return replace(
            self.base, next_id=self.next_id, rows=self.rows, n_rows=self.n_rows, added=self.added,
            removed=frozenset(self.removed), log_records=records, log_bytes=nbytes,
        )  # fmt: skip
