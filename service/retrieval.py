"""What the routes use of a gallery, whichever backend holds it: ``Retrieval``, the interface that
``service.faiss_retrieval.FaissRetrieval`` and ``service.milvus_retrieval.MilvusRetrieval`` implement
(``service.retrieval_backends.load_retrieval`` chooses one), and the query vector of an upload."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Literal

import numpy as np

from model_store.gallery import Exclusion, GalleryItem, Neighbor, gallery_vector

Feature = Literal["center", "ten_crop"]


def query_vector(features: np.ndarray, feature: Feature) -> np.ndarray:
    """The retrieval vector of one image from its crops' fc7 rows: the gallery's vector (the centre
    crop's row) when ``feature`` is "center", or the mean of the ten crops' rows."""
    return features.mean(axis=0) if feature == "ten_crop" else gallery_vector(features)


class Retrieval(ABC):
    """A gallery the service searches and changes. Lookups by id are synchronous and raise
    ``UnknownItemError``; searches and changes are coroutines that keep the event loop free."""

    @abstractmethod
    def __len__(self) -> int: ...

    @abstractmethod
    def item(self, item_id: int) -> GalleryItem: ...

    @abstractmethod
    def vector(self, item_id: int) -> np.ndarray: ...

    @abstractmethod
    def thumbnail(self, item_id: int) -> bytes:
        """The item's JPEG thumbnail."""

    async def search(self, vector: np.ndarray, k: int, exclude: Sequence[int] = ()) -> list[Neighbor]:
        """The ``k`` nearest items to ``vector``, nearest first, leaving out ids in ``exclude``."""
        excluded = Exclusion.of(exclude)
        return excluded.apply(await self._nearest(vector, excluded.depth(k)), k)

    @abstractmethod
    async def _nearest(self, vector: np.ndarray, n: int) -> list[Neighbor]:
        """At least the ``n`` nearest items to ``vector`` (fewer only if the gallery has fewer), nearest first."""

    @abstractmethod
    async def add(
        self, vectors: np.ndarray, labels: Sequence[str], sources: Sequence[str | None], thumbnails: Sequence[bytes]
    ) -> list[GalleryItem]:
        """Add items (one row, label, source and thumbnail JPEG each); returns them with their new ids."""

    @abstractmethod
    async def remove(self, item_id: int) -> GalleryItem:
        """Remove one item; returns it."""
