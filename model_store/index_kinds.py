"""The FAISS index kinds a gallery can use, chosen by name, and the one object that holds them.

=============  =====================================================  =============  ===========
kind           first stage (FAISS factory string, d = 4096)           rerank store   bytes/vector
=============  =====================================================  =============  ===========
flat           ``IDMap2,Flat``: exact, as the gallery always was      none           16 KiB
sq_fp16        ``IDMap2,SQfp16``: exhaustive, half-precision          none           8 KiB
ivf_pq         ``IVF{nlist},PQ{m}`` (its own ids, hashtable map)      SQ8            4 KiB + m
opq_ivf_pq     ``OPQ{m}_{d_out},IVF{nlist},PQ{m}``                    SQ8            4 KiB + m
binary         ``IDMap2,ITQ{bits},LSH``: ITQ short binary codes       SQ8            4 KiB + bits/8
=============  =====================================================  =============  ===========

The approximate kinds (``ivf_pq``, ``opq_ivf_pq``, ``binary``) search in two stages: the compact
first stage proposes ``max(rerank, 4k)`` candidates, which are re-ranked by their distance to the
query computed from an 8-bit scalar-quantised copy of every vector (``IDMap2,SQ8``, 1 byte per
dimension; how well SQ8 alone ranks real fc7 vectors: docs/scaling-index.md). That copy also answers
``reconstruct``. Without it the compact codes rank poorly (docs/scaling-index.md,
benchmarks/results/index_cpu_1m.md).

Trainable kinds are trained once, on the first vectors added (at most ``MAX_TRAIN`` of them, a
seeded sample), and need at least ``MIN_TRAIN`` vectors: fewer is a ValueError, not a silent
fallback to ``flat``, so that the memory and latency one asked for are what one gets. Their
parameters (nlist, m, nprobe, ...) are derived from the training size unless given, and are stored
with the gallery, so a loaded gallery searches exactly as the one that was saved.

Ids are caller-chosen int64s. IVF indexes keep them natively (``IndexIDMap2`` over an IVF index
gives wrong ids after ``remove_ids``, because IVF does not renumber on removal); the others are
wrapped in ``IndexIDMap2``. For the rerank store, ids must be added in increasing order (the gallery
never reuses an id), which lets a candidate's row be found by binary search.
"""

from __future__ import annotations

import math
from typing import Any

import faiss
import numpy as np

KINDS = ("flat", "sq_fp16", "ivf_pq", "opq_ivf_pq", "binary")
TRAINABLE = ("ivf_pq", "opq_ivf_pq", "binary")
MIN_TRAIN = 1000
MAX_TRAIN = 50_000
RERANK_FLOATS = 1 << 24  # decoded candidate floats re-ranked at a time (64 MiB)


def check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise ValueError(f"unknown index kind {kind!r}; choose one of {', '.join(KINDS)}")
    return kind


def _pow2(x: float, lo: int, hi: int) -> int:
    return int(min(hi, max(lo, 2 ** round(math.log2(max(x, 1.0))))))


def _pq_m(dim: int, most: int = 64) -> int:
    """The largest divisor of ``dim`` up to ``most`` that leaves sub-vectors of at least 4 dims."""
    return max(m for m in range(1, min(most, max(1, dim // 4)) + 1) if dim % m == 0)


# candidates the IVF kinds re-rank; recall@10 and latency of 100 to 800 at 1M vectors: docs/scaling-index.md,
# benchmarks/results/index_cpu_1m.md
RERANK_IVF = 400


def default_params(kind: str, dim: int, n_train: int) -> dict[str, Any]:
    """Parameters for ``kind`` on ``dim``-d vectors, trained on ``n_train`` of them."""
    check_kind(kind)
    if kind in ("flat", "sq_fp16"):
        return {}
    if kind == "binary":
        return {"bits": min(512, dim, n_train // 2), "rerank": 1000}
    nlist = _pow2(math.sqrt(n_train), 8, 4096)  # about sqrt(n) lists: 1024 at 1M, 256 at 100k
    nprobe = min(nlist, max(8, nlist // 16))
    if kind == "ivf_pq":
        return {"nlist": nlist, "m": _pq_m(dim), "nprobe": nprobe, "rerank": RERANK_IVF}
    d_out = min(256, dim)
    return {"nlist": nlist, "d_out": d_out, "m": _pq_m(d_out), "nprobe": nprobe, "rerank": RERANK_IVF}


def factory_string(kind: str, params: dict[str, Any]) -> str:
    """The FAISS ``index_factory`` string of the first stage."""
    check_kind(kind)
    p = params
    return {
        "flat": "IDMap2,Flat",
        "sq_fp16": "IDMap2,SQfp16",
        "ivf_pq": "IVF{nlist},PQ{m}",
        "opq_ivf_pq": "OPQ{m}_{d_out},IVF{nlist},PQ{m}",
        "binary": "IDMap2,ITQ{bits},LSH",
    }[kind].format(**p)


def _ivf(index: faiss.Index) -> faiss.IndexIVF | None:
    try:
        return faiss.downcast_index(faiss.extract_index_ivf(index))
    except RuntimeError:
        return None


def _copy(index: faiss.Index) -> faiss.Index:
    """A deep copy (``clone_index`` cannot copy the ITQ transform)."""
    try:
        return faiss.clone_index(index)
    except RuntimeError:
        return faiss.deserialize_index(faiss.serialize_index(index))


def _sample(vectors: np.ndarray, most: int) -> np.ndarray:
    if len(vectors) <= most:
        return vectors
    rows = np.sort(np.random.default_rng(0).choice(len(vectors), most, replace=False))
    return np.ascontiguousarray(vectors[rows])


class VectorIndex:
    """One gallery's vectors: the first-stage index, and for approximate kinds the SQ8 rerank store.
    Not thread-safe for changes; the gallery changes a ``clone()`` and swaps it in."""

    def __init__(self, kind: str, params: dict[str, Any], index: faiss.Index | None, rerank: faiss.Index | None):
        self.kind = check_kind(kind)
        self.params = dict(params)
        self.index = index  # None until a trainable kind is trained
        self.rerank = rerank
        self._configure()

    @classmethod
    def new(cls, kind: str, dim: int, params: dict[str, Any] | None = None) -> VectorIndex:
        """An empty index; a trainable kind is made (with ``params`` or defaults) when trained."""
        check_kind(kind)
        vi = cls(kind, params or {}, None, None)
        vi.dim = dim
        if kind == "flat":
            vi.index = faiss.IndexIDMap2(faiss.IndexFlatL2(dim))  # exactly what galleries always held
        elif kind == "sq_fp16":
            vi.index = faiss.IndexIDMap2(faiss.IndexScalarQuantizer(dim, faiss.ScalarQuantizer.QT_fp16))
        return vi

    def _configure(self) -> None:
        if self.index is None:
            return
        self.dim = self.index.d
        if (ivf := _ivf(self.index)) is not None:
            ivf.nprobe = int(self.params["nprobe"])

    # state

    @property
    def is_trained(self) -> bool:
        return self.index is not None

    @property
    def trained_index(self) -> faiss.Index:
        """The first stage, which a trainable kind has only once trained."""
        if self.index is None:
            raise ValueError(f"the {self.kind} index holds nothing yet: it is made when first trained")
        return self.index

    @property
    def ntotal(self) -> int:
        return 0 if self.index is None else int(self.index.ntotal)

    def ids(self) -> np.ndarray:
        """Every stored id (int64), in storage order."""
        if self.rerank is not None:
            return faiss.vector_to_array(self.rerank.id_map)
        if self.index is None or not self.index.ntotal:
            return np.empty(0, np.int64)
        return faiss.vector_to_array(self.index.id_map)

    def first_stage_ids(self) -> np.ndarray:
        """The ids the first stage holds (for consistency checks)."""
        if self.index is None:
            return np.empty(0, np.int64)
        if (ivf := _ivf(self.index)) is not None:
            lists = ivf.invlists
            parts = [faiss.rev_swig_ptr(lists.get_ids(i), lists.list_size(i)).copy() for i in range(ivf.nlist)]
            return np.concatenate(parts) if parts else np.empty(0, np.int64)
        return faiss.vector_to_array(self.index.id_map) if self.index.ntotal else np.empty(0, np.int64)

    def clone(self) -> VectorIndex:
        vi = VectorIndex(
            self.kind,
            self.params,
            None if self.index is None else _copy(self.index),
            None if self.rerank is None else faiss.clone_index(self.rerank),
        )
        vi.dim = self.dim
        return vi

    # building

    def train(self, vectors: np.ndarray) -> None:
        """Make and train a trainable kind on (a sample of) ``vectors``; nothing for the others."""
        if self.is_trained:
            return
        if len(vectors) < MIN_TRAIN:
            raise ValueError(
                f"index kind {self.kind!r} is trained on the first vectors added and needs at least {MIN_TRAIN}"
                f" of them, got {len(vectors)}; add more at once or use index kind 'flat'"
            )
        self.params = default_params(self.kind, self.dim, len(vectors)) | self.params
        sample = _sample(np.ascontiguousarray(vectors, dtype=np.float32), MAX_TRAIN)
        index = faiss.index_factory(self.dim, factory_string(self.kind, self.params))
        if (ivf := _ivf(index)) is not None:
            ivf.cp.min_points_per_centroid = 5  # fewer than FAISS's 39 per list is fine; no warning spam
            ivf.pq.cp.min_points_per_centroid = 5
            ivf.do_polysemous_training = False  # the factory turns it on; slow, and unused here
            ivf.set_direct_map_type(faiss.DirectMap.Hashtable)  # reconstruct and remove by id
        if isinstance(index, faiss.IndexPreTransform):
            opq = faiss.downcast_VectorTransform(index.chain.at(0))
            if isinstance(opq, faiss.OPQMatrix):
                opq.niter = 20  # of 50 by default: most of the training time, for little recall
        index.train(sample)
        rerank = faiss.IndexIDMap2(faiss.IndexScalarQuantizer(self.dim, faiss.ScalarQuantizer.QT_8bit))
        rerank.train(sample)
        self.index, self.rerank = index, rerank
        self._configure()

    def add(self, vectors: np.ndarray, ids: np.ndarray) -> None:
        """Add float32 [n, d] ``vectors`` under int64 ``ids`` (trains a trainable kind first)."""
        self.train(vectors)
        if self.rerank is not None:
            if self.rerank.ntotal and len(ids) and ids.min() <= self.ids()[-1]:
                raise ValueError("ids must be added in increasing order to this index kind")
            if len(ids) > 1 and (np.diff(ids) <= 0).any():
                raise ValueError("ids must be added in increasing order to this index kind")
            self.rerank.add_with_ids(vectors, ids)
        self.trained_index.add_with_ids(vectors, ids)

    def remove(self, ids: np.ndarray) -> int:
        """Remove ``ids``; returns how many were present."""
        if self.index is None:
            return 0
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        removed = int(self.index.remove_ids(ids))
        if self.rerank is not None:
            self.rerank.remove_ids(ids)
        return removed

    # reading

    def reconstruct(self, item_id: int) -> np.ndarray:
        """The stored vector: exact for flat, approximate (fp16 / SQ8) for the other kinds."""
        return (self.rerank if self.rerank is not None else self.trained_index).reconstruct(int(item_id))

    def search(
        self, queries: np.ndarray, k: int, first_stage: faiss.Index | None = None, rerank: bool = True
    ) -> tuple[np.ndarray, np.ndarray]:
        """(squared L2 [n, k], ids [n, k]) of float32 [n, d] ``queries``, with -1 ids where fewer
        than k items exist. ``first_stage``: a copy of ``self.index`` to search with (a GPU one);
        ``rerank=False`` returns the first stage's own ranking (for measurements)."""
        if not self.ntotal:
            return np.full((len(queries), k), np.inf, np.float32), np.full((len(queries), k), -1, np.int64)
        first_stage = self.trained_index if first_stage is None else first_stage
        if self.rerank is None or not rerank:
            return first_stage.search(queries, k)
        _, cand = first_stage.search(queries, max(int(self.params["rerank"]), 4 * k))
        return self.rerank_candidates(queries, cand, k)

    def rerank_candidates(self, queries: np.ndarray, cand: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Order candidate ids [n, c] by their distance to the queries, decoded from the SQ8 store."""
        if self.rerank is None:
            raise ValueError(f"the {self.kind} index keeps no rerank store")
        sq = faiss.downcast_index(self.rerank.index)
        stored = faiss.rev_swig_ptr(self.rerank.id_map.data(), self.rerank.id_map.size())
        codes = faiss.rev_swig_ptr(sq.codes.data(), sq.codes.size()).reshape(-1, sq.code_size)
        out_d = np.full((len(queries), k), np.inf, np.float32)
        out_i = np.full((len(queries), k), -1, np.int64)
        block = max(1, RERANK_FLOATS // (cand.shape[1] * self.dim))
        for start in range(0, len(queries), block):
            q = queries[start : start + block]
            c = cand[start : start + block]
            rows = np.minimum(np.searchsorted(stored, c), len(stored) - 1)
            valid = (c >= 0) & (stored[rows] == c)
            decoded = sq.sa_decode(codes[rows.ravel()]).reshape(*c.shape, -1)
            dist = np.einsum("qcd,qcd->qc", decoded, decoded) - 2 * np.einsum("qcd,qd->qc", decoded, q)
            dist += np.einsum("qd,qd->q", q, q)[:, None]
            dist[~valid] = np.inf
            order = np.argsort(dist, axis=1)[:, :k]
            take = min(k, c.shape[1])
            d_sorted = np.take_along_axis(dist, order, 1)
            i_sorted = np.where(np.isfinite(d_sorted), np.take_along_axis(c, order, 1), -1)
            out_d[start : start + len(q), :take] = d_sorted
            out_i[start : start + len(q), :take] = i_sorted
        return out_d, out_i

    # persistence

    def write(self, path: str, rerank_path: str | None) -> None:
        faiss.write_index(self.trained_index, path)
        if self.rerank is not None:
            assert rerank_path is not None
            faiss.write_index(self.rerank, rerank_path)

    @classmethod
    def read(cls, kind: str, params: dict[str, Any], path: str, rerank_path: str | None) -> VectorIndex:
        index = faiss.read_index(path)
        rerank = faiss.read_index(rerank_path) if rerank_path else None
        return cls(kind, params, index, rerank)
