"""Searching a snapshot: the base index (less the removed items) and the exact delta, merged by
distance (docs/gallery.md, "In memory")."""

from __future__ import annotations

from collections.abc import Iterable

import faiss
import numpy as np

from model_store.gallery.faiss_ops import euclidean, search_index
from model_store.gallery.items import Exclusion, Neighbor
from model_store.gallery.snapshot import Snapshot

# with removed base items, a first stage is asked for this many results at most to filter them out
# itself (GPU flat searches take k <= 2048); beyond it the CPU index searches with an IDSelector
OVERFETCH_MAX = 2048


def search(snapshot: Snapshot, queries: np.ndarray, k: int, exclude: Iterable[int] = ()) -> list[list[Neighbor]]:
    """The ``k`` nearest live items of each row of ``queries`` (float32 [n, dim]), nearest first,
    leaving out ids in ``exclude``; distances are Euclidean."""
    if not snapshot.size:
        return [[] for _ in range(len(queries))]
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    excluded = Exclusion.of(exclude)
    wanted = excluded.depth(k)
    parts = []
    in_base = snapshot.vectors.ntotal - len(snapshot.removed)
    if in_base:
        parts.append(_search_base(snapshot, queries, min(wanted, in_base)))
    if snapshot.added:
        parts.append(_search_delta(snapshot, queries, wanted))
    squared, ids = (np.concatenate(part, axis=1) for part in zip(*parts, strict=True))
    if len(parts) > 1:  # merge by distance (each part is sorted already)
        order = np.argsort(squared, axis=1, kind="stable")
        squared, ids = np.take_along_axis(squared, order, 1), np.take_along_axis(ids, order, 1)
    results = []
    for row_d, row_i in zip(euclidean(squared), ids, strict=True):
        hits = []
        for d, i in zip(row_d.tolist(), row_i.tolist(), strict=True):
            item = snapshot.get(i) if i >= 0 else None
            if item is not None:
                hits.append(Neighbor(item, d))
                if len(hits) == wanted:
                    break
        results.append(excluded.apply(hits, k))
    return results


def _search_base(snapshot: Snapshot, queries: np.ndarray, wanted: int) -> tuple[np.ndarray, np.ndarray]:
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


def _search_delta(snapshot: Snapshot, queries: np.ndarray, wanted: int) -> tuple[np.ndarray, np.ndarray]:
    """(squared L2, ids) of the exact nearest rows of the delta (rows of removed items included)."""
    vectors, ids = snapshot.delta()
    n = len(ids)
    squared, row = faiss.knn(queries, vectors, min(n, wanted + n - len(snapshot.added)))
    return squared, np.where(row >= 0, ids[np.maximum(row, 0)], -1)
