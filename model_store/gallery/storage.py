"""A gallery's folder on disk: reading formats 1-3 (checksums verified, log replayed), appending a
change, committing a new base, the writer lock and the removal of leftovers (docs/gallery.md)."""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

from model_store import change_log
from model_store.gallery.errors import GalleryConflict, GalleryError, UnknownItemError
from model_store.gallery.items import GalleryItem
from model_store.gallery.snapshot import Changes, Snapshot
from model_store.index_kinds import VectorIndex, check_kind
from model_store.store import fsync_path, sha256_file, write_json_atomic
from model_store.writer_lock import WriterLock

log = logging.getLogger(__name__)

GALLERY_FILE = "gallery.json"
THUMBS_DIR = "thumbs"
FORMAT_VERSION = 1  # flat galleries without a change log (read, no longer written)
KINDS_FORMAT_VERSION = 2  # galleries of another index kind without a change log (read, no longer written)
LOG_FORMAT_VERSION = 3  # a base plus a change log, every kind (format 1 and 2 readers refuse it)
WRITER_WAIT_S = 5.0  # how long a change waits for the writer lock (a loader's cleanup holds it briefly)
VECTORS_RE = re.compile(r"^(vectors|rerank)-(\d+)\.faiss$")
CHANGES_RE = re.compile(r"^changes-(\d+)\.log$")

FileState = tuple[int, ...] | None
DiskState = tuple[FileState, FileState]  # gallery.json's and the change log's


class GalleryFolder:
    """The files of one gallery folder, and this process's view of them: a change is refused with
    GalleryConflict if they are not as this process last read or wrote them."""

    def __init__(self, directory: Path, changes_file: str | None, seen: DiskState | None = None):
        self.directory = Path(directory)
        self.changes_file = changes_file  # the current generation's log (None: no base with a log yet)
        self.compact_next = False  # set when gallery.json may name a generation newer than the snapshot
        self._writer = WriterLock(self.directory)
        self.seen = self.state() if seen is None else seen  # the files as this process last read or wrote them

    @classmethod
    def read(cls, directory: Path) -> tuple[GalleryFolder, int, Snapshot]:
        """(the folder, the vectors' dim, the snapshot) of the gallery in ``directory``."""
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
        snapshot = Snapshot.of_base(generation, int(meta["next_id"]), vectors, items, changes_file)
        seen_log = _stat(directory / changes_file) if changes_file else None
        if changes_file:
            snapshot = _replay(directory / changes_file, snapshot, dim)
        return cls(directory, changes_file, (seen_meta, seen_log)), dim, snapshot

    def state(self) -> DiskState:
        changes_file = self.changes_file
        return _stat(self.directory / GALLERY_FILE), _stat(self.directory / changes_file) if changes_file else None

    @contextmanager
    def writing(self) -> Iterator[None]:
        """Hold the folder's writer lock, with the folder as this process last saw it (or raise
        GalleryConflict)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        if not self._writer.try_acquire(wait_s=WRITER_WAIT_S):
            raise GalleryConflict(f"another process is changing the gallery in {self.directory}")
        try:
            if self.state() != self.seen:
                raise GalleryConflict(
                    f"the gallery in {self.directory} was changed by another process after this one read it;"
                    " load it again to change it (one process writes a gallery at a time)"
                )
            yield
        finally:
            self._writer.release()

    def write_thumbnails(self, items: Sequence[GalleryItem], jpegs: Sequence[bytes]) -> None:
        """Write and fsync each item's thumbnail (before the change that adds the items commits)."""
        thumbs = self.directory / THUMBS_DIR
        thumbs.mkdir(parents=True, exist_ok=True)
        for item, jpeg in zip(items, jpegs, strict=True):
            _write_file_durably(thumbs / item.thumbnail, jpeg)
        fsync_path(thumbs)

    def remove_thumbnail(self, item: GalleryItem) -> None:
        (self.directory / THUMBS_DIR / item.thumbnail).unlink(missing_ok=True)

    def append(self, old: Snapshot, record: bytes) -> int:
        """Append ``record`` to ``old``'s change log and fsync it (the commit point of a change);
        returns where the log's committed records now end."""
        assert old.changes_file is not None  # without a log, the change makes a new base instead
        try:
            return change_log.append(self.directory / old.changes_file, old.log_bytes, old.generation, record)
        finally:
            self.seen = self.state()  # this process's own write, even a failed one

    def commit(
        self, old: Snapshot, index: VectorIndex, dim: int, items: dict[int, GalleryItem], next_id: int
    ) -> Snapshot:
        """Write ``index`` as the base of generation g+1 with an empty log and replace gallery.json
        (the commit point); returns its snapshot. Then swap it in and call ``committed``."""
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
            "dim": dim,
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
            self.compact_next = True  # it may have replaced gallery.json: never append to the old log again
            self.seen = self.state()
            raise
        self.compact_next = False
        return Snapshot.of_base(generation, next_id, index, items, changes_file)

    def committed(self, old: Snapshot, new: Snapshot) -> None:
        """After ``commit``: take note of the files as written and delete ``old``'s generation."""
        self.changes_file = new.changes_file
        self.seen = self.state()
        for stale in (f"vectors-{old.generation}.faiss", f"rerank-{old.generation}.faiss", old.changes_file):
            if stale:
                (self.directory / stale).unlink(missing_ok=True)
        if old.log_records:
            message = "gallery %s: %d logged changes compacted into generation %d"
            log.info(message, self.directory, old.log_records, new.generation)

    def clean_up(self, snapshot: Snapshot) -> None:
        """Remove leftovers, unless the folder is read-only, another process holds its lock, or
        it changed since this process read it."""
        if not os.access(self.directory, os.W_OK) or not self._writer.try_acquire():
            return
        try:
            if self.state() == self.seen:
                self._remove_leftovers(snapshot)
        finally:
            self._writer.release()

    def _remove_leftovers(self, snapshot: Snapshot) -> None:
        """Delete what a crashed change left behind: other generations' files, temp files,
        thumbnails of items that are not in the gallery."""
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


def _stat(path: Path) -> FileState:
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


def _write_file_durably(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    fsync_path(tmp)
    os.replace(tmp, path)


def _replay(path: Path, snapshot: Snapshot, dim: int) -> Snapshot:
    """``snapshot`` (a base just read) with the changes of its log at ``path`` applied."""
    try:
        records, end = change_log.read(path, snapshot.generation, dim)
        changes = Changes(snapshot, dim)
        for record in records:
            if isinstance(record, change_log.AddRecord):
                changes.add([GalleryItem(**row) for row in record.items], record.vectors)
            else:
                changes.remove(record.id)
    except (change_log.ChangeLogError, UnknownItemError, TypeError, ValueError) as exc:
        raise GalleryError(f"{path}: {exc}") from exc
    return changes.snapshot(len(records), end)
