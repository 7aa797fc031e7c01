"""The gallery's append-only change log, ``changes-<generation>.log`` (see ``model_store.gallery``).

A header line ``alexnet-gallery-changes 1 generation <g>\\n``, then records, each::

    u32 LE payload length | u32 LE CRC32 of (length field + payload) | payload

Payloads: ``b"A"`` + u32 LE length of a UTF-8 JSON list of items (``id``, ``label``, ``source``,
``thumbnail``) + that JSON + the n x dim float32 LE vectors, row by row; or ``b"R"`` + the removed
id as i64 LE. The header and the first record are written together, so a torn creation leaves a
prefix of the header (or zeros) and nothing that was acknowledged.

Reading stops at the first record that is incomplete or fails its CRC (a crash mid-append: that
change was never acknowledged, or another process's append still under way) and reports where the
committed records end. Reading never changes the file: a process that only reads the gallery (a
read replica, on a read-only mount) must not cut a writer's append short. The writer's next append
is written at that end and cuts off whatever follows. A record that passes its CRC but does not
decode is corruption, not a torn write, and is a ``ChangeLogError``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from model_store.store import fsync_path

log = logging.getLogger(__name__)

MAGIC = b"alexnet-gallery-changes 1 generation "
FRAME = struct.Struct("<II")  # payload length, CRC32
ADD, REMOVE = b"A", b"R"


class ChangeLogError(RuntimeError):
    """The change log is not this gallery's, or holds a record that does not decode."""


@dataclass(frozen=True)
class AddRecord:
    items: list[dict]  # id, label, source, thumbnail
    vectors: np.ndarray  # float32 [len(items), dim]


@dataclass(frozen=True)
class RemoveRecord:
    id: int


def header(generation: int) -> bytes:
    return MAGIC + f"{generation}\n".encode()


def _frame(payload: bytes) -> bytes:
    length = struct.pack("<I", len(payload))
    return length + struct.pack("<I", zlib.crc32(payload, zlib.crc32(length))) + payload


def encode_add(items: list[dict], vectors: np.ndarray) -> bytes:
    meta = json.dumps(items, separators=(",", ":")).encode()
    rows = np.ascontiguousarray(vectors, dtype="<f4")
    return _frame(ADD + struct.pack("<I", len(meta)) + meta + rows.tobytes())


def encode_remove(item_id: int) -> bytes:
    return _frame(REMOVE + struct.pack("<q", item_id))


def _decode(payload: bytes, dim: int) -> AddRecord | RemoveRecord:
    kind = payload[:1]
    if kind == REMOVE and len(payload) == 9:
        return RemoveRecord(struct.unpack_from("<q", payload, 1)[0])
    if kind == ADD and len(payload) >= 5:
        (meta_len,) = struct.unpack_from("<I", payload, 1)
        items = json.loads(payload[5 : 5 + meta_len])
        vectors = np.frombuffer(payload, "<f4", offset=5 + meta_len).astype(np.float32)
        if isinstance(items, list) and items and vectors.size == len(items) * dim:
            return AddRecord(items, vectors.reshape(len(items), dim))
    raise ValueError(f"a record of kind {kind!r} and {len(payload)} bytes does not decode")


def read(path: Path, generation: int, dim: int) -> tuple[list[AddRecord | RemoveRecord], int]:
    """The records of the log at ``path`` and the end of the last whole one (0: none, not even a
    whole header; the next append then writes the file from its start). No file: ([], 0). A torn
    tail is ignored with a warning, never cut here (``append`` overwrites it)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return [], 0
    head = header(generation)
    if not data.startswith(head):
        if head.startswith(data) or not data.strip(b"\0"):  # the creation was torn: nothing was committed
            log.warning("%s: ignored a torn change log of %d bytes (the next change rewrites it)", path, len(data))
            return [], 0
        raise ChangeLogError(f"{path} is not the change log of generation {generation}")
    records, end = [], len(head)
    while end + FRAME.size <= len(data):
        length, crc = FRAME.unpack_from(data, end)
        payload = data[end + FRAME.size : end + FRAME.size + length]
        if not length or len(payload) < length or zlib.crc32(payload, zlib.crc32(data[end : end + 4])) != crc:
            break
        try:
            records.append(_decode(payload, dim))
        except ValueError as exc:
            raise ChangeLogError(f"{path}: record at byte {end}: {exc}") from exc
        end += FRAME.size + length
    if end < len(data):
        log.warning(
            "%s: ignored %d bytes of an unfinished change at its end (the next change overwrites them)",
            path, len(data) - end,
        )  # fmt: skip
    return records, end


def append(path: Path, offset: int, generation: int, record: bytes) -> int:
    """Write ``record`` at ``offset`` (the end of the last committed record; 0: a new log, which
    gets its header) and fsync it: the commit point of a change. Returns the new end."""
    data = (header(generation) if offset == 0 else b"") + record
    with contextlib.suppress(FileNotFoundError):
        if os.stat(path).st_nlink > 1:
            _own_copy(path, offset)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        try:
            view, at = memoryview(data), offset
            while view:
                written = os.pwrite(fd, view, at)
                view, at = view[written:], at + written
            if os.fstat(fd).st_size > at:  # a torn tail: a crashed or failed append's bytes
                os.ftruncate(fd, at)
            os.fsync(fd)
        except BaseException:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, offset)  # a failed change leaves the log as it was
            raise
    finally:
        os.close(fd)
    if offset == 0:
        fsync_path(path.parent)  # the new file's name
    return offset + len(data)


def _own_copy(path: Path, size: int) -> None:
    """Replace ``path``, a name of a file with others (a hard-linked copy of the store, as the tests
    and ``cp -al`` backups make), by a copy of its first ``size`` bytes: appends stay in this gallery."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(path, "rb") as src, open(tmp, "wb") as dst:
        dst.write(src.read(size))
        dst.flush()
        os.fsync(dst.fileno())
    os.replace(tmp, path)
    fsync_path(path.parent)
