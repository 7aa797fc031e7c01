"""The service's view of the version's gallery (``model_store.gallery``): searches and changes run
on worker threads so the event loop never waits on FAISS or on fsync."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Literal

import numpy as np

from model_store.gallery import Gallery, GalleryItem, Neighbor, UnknownItemError
from model_store.store import ModelVersion
from service.search_batching import SearchCoalescer
from service.settings import Settings

log = logging.getLogger(__name__)
Feature = Literal["center", "ten_crop"]
GALLERY_FEATURE: Feature = "center"  # what training/index.py stores for each item


def query_vector(features: np.ndarray, feature: Feature) -> np.ndarray:
    """The retrieval vector of one image from its crops' fc7 rows: the centre crop's row (the
    only one when ``feature`` is "center") or the mean of the ten crops' rows."""
    return features.mean(axis=0) if feature == "ten_crop" else features[0]


class Retrieval:
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

    async def search(self, vector: np.ndarray, k: int, exclude: Sequence[int] = ()) -> list[Neighbor]:
        """The ``k`` nearest items, leaving out ``exclude``; concurrent searches run as one batch."""
        hits = await self._searches.search(vector, k + len(exclude))
        skip = set(exclude)
        return [hit for hit in hits if hit.item.id not in skip][:k]

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


def load_retrieval(version: ModelVersion, settings: Settings | None = None) -> Retrieval:
    """The version's gallery, or an empty one (written on the first add) if it has none yet; with
    ``vector_backend`` "milvus", its Milvus collection (seeded from that gallery when new)."""
    if settings is not None and settings.vector_backend == "milvus":
        from service.milvus_retrieval import load_milvus_retrieval  # pymilvus only when chosen

        return load_milvus_retrieval(version, settings)
    gallery = Gallery.open(version.index_dir, version.manifest.feature_dim)
    if not len(gallery):
        log.warning("model %s has no gallery items: /similar answers no neighbours until some are added", version.path)
    return Retrieval(gallery)
