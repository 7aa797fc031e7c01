"""FAISS in small functions: float32 contiguous arrays in, (squared L2, ids) out."""

from __future__ import annotations

import functools
from collections.abc import Sequence

import faiss
import numpy as np


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
