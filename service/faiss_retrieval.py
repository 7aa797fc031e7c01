"""The default retrieval backend: the version's FAISS gallery (``model_store.gallery``) in this
process. Searches and changes run on worker threads so the event loop never waits on FAISS or on
fsync; concurrent searches run as one batch."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import numpy as np

from model_store.gallery import Gallery, GalleryItem, Neighbor, UnknownItemError
from model_store.store import ModelVersion
from service.retrieval import Retrieval
from service.search_batching import SearchCoalescer

log = logging.getLogger(__name__)


class FaissRetrieval(Retrieval):
    def __init__(self, gallery: Gallery):
        self.gallery = gallery
        self._searches: SearchCoalescer[list[Neighbor]] = SearchCoalescer(gallery.search)

    def __len__(self) -> int:
        return len(self.gallery)

    def item(self, item_id: int) -> GalleryItem:
        return self.gallery.get(item_id)

    def vector(self, item_id: int) -> np.ndarray:
        return self.gallery.vector(item_id)

    def thumbnail(self, item_id: int) -> bytes:
        try:
            return self.gallery.thumbnail_path(item_id).read_bytes()
        except FileNotFoundError:  # removed between the lookup and the read
            raise UnknownItemError(item_id) from None

    async def _nearest(self, vector: np.ndarray, n: int) -> list[Neighbor]:
        return await self._searches.search(vector, n)

    async def add(
        self, vectors: np.ndarray, labels: Sequence[str], sources: Sequence[str | None], thumbnails: Sequence[bytes]
    ) -> list[GalleryItem]:
        items = await asyncio.to_thread(self.gallery.add, vectors, labels, sources, thumbnails)
        log.info("gallery: added ids %s", [item.id for item in items])
        return items

    async def remove(self, item_id: int) -> GalleryItem:
        item = await asyncio.to_thread(self.gallery.remove, item_id)
        log.info("gallery: removed id %d", item_id)
        return item


def load_faiss_retrieval(version: ModelVersion) -> FaissRetrieval:
    """The version's gallery, or an empty one (written on the first add) if it has none yet."""
    gallery = Gallery.open(version.index_dir, version.manifest.feature_dim)
    if not len(gallery):
        log.warning("model %s has no gallery items: /similar answers no neighbours until some are added", version.path)
    return FaissRetrieval(gallery)
