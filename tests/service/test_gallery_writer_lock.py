"""One writer per gallery folder: a change waits for and holds writer.lock, refuses a folder that
another process changed since it read it, and loading cleans up only what no writer is writing."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from model_store.gallery import GALLERY_FILE, THUMBS_DIR, Gallery, GalleryConflict
from model_store.gallery import storage as gallery_module
from model_store.writer_lock import LOCK_FILE, WriterLock

DIM = 8
REPO = Path(__file__).resolve().parents[2]


def add(gallery: Gallery, count: int, seed: int, label: str = "a") -> list[int]:
    vectors = np.random.default_rng(seed).normal(size=(count, DIM)).astype(np.float32)
    items = gallery.add(vectors, [label] * count, [None] * count, [b"\xff\xd8jpeg"] * count)
    return [item.id for item in items]


@pytest.fixture
def directory(tmp_path: Path) -> Path:
    directory = tmp_path / "index"
    add(Gallery.empty(directory, DIM), 3, seed=0)
    return directory


def test_a_stale_gallery_refuses_to_change_and_the_other_change_survives(directory: Path) -> None:
    first, second = Gallery.load(directory), Gallery.load(directory)
    (added,) = add(second, 1, seed=1, label="second")  # an append to the log that `first` has not read
    with pytest.raises(GalleryConflict, match="changed by another process"):
        add(first, 1, seed=2, label="first")  # at its old offset it would overwrite that record
    with pytest.raises(GalleryConflict):
        first.remove(0)
    assert len(first) == 3  # unchanged in memory too
    reloaded = Gallery.load(directory)
    assert reloaded.get(added).label == "second" and len(reloaded) == 4
    assert add(reloaded, 1, seed=3) == [added + 1]  # a fresh load may change it


def test_a_change_waits_for_the_lock_and_gives_up_with_a_conflict(directory: Path, monkeypatch) -> None:
    monkeypatch.setattr(gallery_module, "WRITER_WAIT_S", 0.2)
    gallery = Gallery.load(directory)
    holder = subprocess.Popen(  # another process, in the middle of a change
        [sys.executable, "-c", textwrap.dedent(f"""
            import fcntl, sys, time
            fd = open({str(directory / LOCK_FILE)!r}, "a")
            fcntl.flock(fd, fcntl.LOCK_EX)
            print("locked", flush=True)
            sys.stdin.readline()
        """)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(GalleryConflict, match="another process is changing"):
            add(gallery, 1, seed=1)
        assert len(Gallery.load(directory)) == 3  # nothing written
    finally:
        holder.communicate("done\n", timeout=10)
    assert add(gallery, 1, seed=1) == [3]  # its lock died with it: the change goes through


def test_loading_leaves_a_writers_unfinished_files_alone(directory: Path) -> None:
    generation = json.loads((directory / GALLERY_FILE).read_text())["generation"]
    lock = WriterLock(directory)
    assert lock.try_acquire()  # a writer mid-compaction: next base and an add's thumbnail written, not committed
    pending = [directory / f"vectors-{generation + 1}.faiss", directory / THUMBS_DIR / "3.jpg"]
    for path in pending:
        path.write_bytes(b"in progress")
    try:
        assert len(Gallery.load(directory)) == 3
        assert all(path.exists() for path in pending)
    finally:
        lock.release()
    Gallery.load(directory)  # no writer now: they are a crashed change's leftovers
    assert not any(path.exists() for path in pending)


def test_the_lock_file_needs_no_cleanup_and_is_free_between_changes(directory: Path) -> None:
    gallery = Gallery.load(directory)
    add(gallery, 1, seed=1)
    assert (directory / LOCK_FILE).exists()
    other = WriterLock(directory)
    assert other.try_acquire()  # not held between changes
    other.release()


def test_a_folder_rebuilt_under_a_loaded_gallery_refuses_its_changes(directory: Path, tmp_path: Path) -> None:
    """``alexnet index`` builds a new folder and renames it into place: a service that loaded the
    old one must not append to the new one's log."""
    gallery = Gallery.load(directory)
    rebuilt = tmp_path / "rebuilt"
    add(Gallery.empty(rebuilt, DIM), 5, seed=9, label="rebuilt")
    directory.rename(tmp_path / "old")
    rebuilt.rename(directory)
    with pytest.raises(GalleryConflict, match="changed by another process"):
        add(gallery, 1, seed=1)
    assert [item.label for item in Gallery.load(directory).items()] == ["rebuilt"] * 5
