"""``Gallery``: a model version's retrieval gallery, searched in memory and changed on disk
(docs/gallery.md). Thread-safe; one process writes a folder at a time."""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np

from model_store import change_log
from model_store.gallery.compaction import Compaction, compacted
from model_store.gallery.errors import GalleryError, UnknownItemError
from model_store.gallery.faiss_ops import as_ids, as_vectors
from model_store.gallery.items import GalleryItem, Neighbor
from model_store.gallery.search import search
from model_store.gallery.snapshot import Changes, Snapshot
from model_store.gallery.storage import GALLERY_FILE, THUMBS_DIR, GalleryFolder
from model_store.index_kinds import VectorIndex, check_kind

log = logging.getLogger(__name__)


class Gallery:
    """A persistent gallery in ``directory``. Thread-safe: changes are serialised by a lock and
    each returns only once it is on disk; searches read an immutable snapshot."""

    def __init__(self, folder: GalleryFolder, dim: int, snapshot: Snapshot, compaction: Compaction | None = None):
        self.directory = folder.directory
        self.dim = dim
        self.compaction = compaction or Compaction()
        self._folder = folder
        self._snapshot = snapshot
        self._write_lock = threading.Lock()

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
        return cls(GalleryFolder(directory, None), dim, Snapshot.of_base(0, 0, vectors, {}, None), compaction)

    @classmethod
    def load(cls, directory: Path, compaction: Compaction | None = None) -> Gallery:
        folder, dim, snapshot = GalleryFolder.read(directory)
        gallery = cls(folder, dim, snapshot, compaction)
        folder.clean_up(snapshot)
        log.info(
            "loaded gallery %s: %d items (%d changes logged since the base), dim %d, index kind %s",
            folder.directory, snapshot.size, snapshot.log_records, dim, snapshot.vectors.kind,
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
        return self._snapshot.vector(item_id)

    def thumbnail_path(self, item_id: int) -> Path:
        return self.directory / THUMBS_DIR / self.get(item_id).thumbnail

    def search(self, queries: np.ndarray, k: int, exclude: Sequence[int] = ()) -> list[list[Neighbor]]:
        """The ``k`` nearest items of each query row, nearest first, leaving out ids in ``exclude``."""
        return search(self._snapshot, as_vectors(queries, self.dim), k, exclude)

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
        with self._write_lock, self._folder.writing():
            old = self._snapshot
            ids = as_ids(range(old.next_id, old.next_id + count), count)
            new_items = [
                GalleryItem(id=int(i), label=label, source=source, thumbnail=f"{i}.jpg")
                for i, label, source in zip(ids, labels, sources, strict=True)
            ]
            # a compaction's index is made before any file is written: training may refuse the vectors
            index = compacted(old, vectors, ids) if self._compacts(old, vectors.nbytes) else None
            self._folder.write_thumbnails(new_items, thumbnails)
            if index is not None:
                items = old.live_items() | {item.id: item for item in new_items}
                self._commit(old, index, items, old.next_id + count)
            else:
                changes = Changes(old, self.dim)
                changes.add(new_items, vectors)
                self._append(old, change_log.encode_add([asdict(it) for it in new_items], vectors), changes)
            return new_items

    def remove(self, item_id: int) -> GalleryItem:
        """Remove one item; returns it once the removal is on disk."""
        with self._write_lock:
            old = self._snapshot
            changes = Changes(old, self.dim)
            item = changes.remove(item_id)  # an unknown id needs no lock
            with self._folder.writing():
                if self._compacts(old, 0):
                    new = changes.snapshot(0, 0)
                    self._commit(old, compacted(new), new.live_items(), new.next_id)
                else:
                    self._append(old, change_log.encode_remove(int(item_id)), changes)
                self._folder.remove_thumbnail(item)
            return item

    def _compacts(self, old: Snapshot, vector_bytes: int) -> bool:
        """Whether the next change makes a new base rather than a log record."""
        if old.changes_file is None or not old.vectors.is_trained or self._folder.compact_next:
            return True  # no base, one without a log, or a compaction that failed at its commit point
        return self.compaction.due(old.log_records + 1, old.log_bytes + vector_bytes, len(old.items))

    def _append(self, old: Snapshot, record: bytes, changes: Changes) -> None:
        """Commit a change: append its record to the log and fsync it, then swap in the snapshot."""
        end = self._folder.append(old, record)
        self._snapshot = changes.snapshot(old.log_records + 1, end)

    def _commit(self, old: Snapshot, index: VectorIndex, items: dict[int, GalleryItem], next_id: int) -> None:
        """Write ``index`` as the base of generation g+1 with an empty log, and delete generation g."""
        new = self._folder.commit(old, index, self.dim, items, next_id)
        self._snapshot = new
        self._folder.committed(old, new)
