"""Compaction: when the change log is folded into a new base, and the index that base gets
(docs/gallery.md, "Compaction")."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from model_store.gallery.snapshot import Snapshot
from model_store.index_kinds import VectorIndex

# when the change log is folded into a new base (see ``Compaction``): more records than both of
# these, or more bytes than the last; the delta is searched exhaustively, so it is kept small
COMPACT_RECORDS = 1000
COMPACT_FRACTION = 0.02
COMPACT_BYTES = 64 << 20


@dataclass(frozen=True)
class Compaction:
    """When the change log is folded into a new base: once it would hold more than ``records``
    records and more than ``fraction`` of the base's item count, or more than ``max_bytes``."""

    records: int = COMPACT_RECORDS
    fraction: float = COMPACT_FRACTION
    max_bytes: int = COMPACT_BYTES

    def due(self, records: int, nbytes: int, base_items: int) -> bool:
        return records > max(self.records, self.fraction * base_items) or nbytes > self.max_bytes


def compacted(snapshot: Snapshot, vectors: np.ndarray | None = None, ids: np.ndarray | None = None) -> VectorIndex:
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
