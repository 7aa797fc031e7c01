"""Concurrent /similar searches share one index search.

A flat FAISS search of one query reads every gallery vector; a search of 16 queries reads them once
as a matrix product (BLAS), several times cheaper per query. The coalescer gives each search to the
same worker: while one batch of queries runs on a thread, the ones that arrive wait and then go
together. An idle coalescer starts a lone query at once, so nothing waits for company.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

import numpy as np

log = logging.getLogger(__name__)
T = TypeVar("T")
# queries [n, d] and how many hits each needs (the largest k of the batch) -> one hit list per query
SearchMany = Callable[[np.ndarray, int], Sequence[T]]


@dataclass
class _Query(Generic[T]):
    vector: np.ndarray
    k: int
    future: asyncio.Future[T]


class SearchCoalescer(Generic[T]):
    def __init__(self, search_many: SearchMany[T], max_batch: int = 64):
        if max_batch < 1:
            raise ValueError("max_batch must be >= 1")
        self._search_many = search_many
        self.max_batch = max_batch
        self._pending: list[_Query[T]] = []
        self._worker: asyncio.Task[None] | None = None

    async def search(self, vector: np.ndarray, k: int) -> T:
        """The hits of one query vector, searched together with whatever queries are waiting."""
        loop = asyncio.get_running_loop()
        query = _Query(vector, k, loop.create_future())
        self._pending.append(query)
        if self._worker is None or self._worker.done():
            self._worker = loop.create_task(self._drain(), name="search-coalescer")
        return await query.future

    async def _drain(self) -> None:
        while self._pending:
            batch, self._pending = self._pending[: self.max_batch], self._pending[self.max_batch :]
            batch = [q for q in batch if not q.future.done()]  # done: the caller gave up
            if not batch:
                continue
            queries = np.stack([q.vector for q in batch])
            try:
                results = await asyncio.to_thread(self._search_many, queries, max(q.k for q in batch))
            except Exception as exc:  # every query of the batch gets the error, the next batch goes on
                log.exception("search of %d queries failed", len(batch))
                for q in batch:
                    if not q.future.done():
                        q.future.set_exception(exc)
                continue
            for q, hits in zip(batch, results, strict=True):
                if not q.future.done():
                    q.future.set_result(hits)
