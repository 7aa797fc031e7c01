"""What a gallery holds and answers: items, neighbours, and ids left out of a search."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class GalleryItem:
    id: int
    label: str
    source: str | None
    thumbnail: str  # file name under thumbs/


@dataclass(frozen=True)
class Neighbor:
    item: GalleryItem
    distance: float  # Euclidean


@dataclass(frozen=True)
class Exclusion:
    """Ids to leave out of a search's results: search ``depth(k)`` deep, then ``apply`` keeps the
    first ``k`` hits of other items. Every search with ``exclude`` goes through this."""

    ids: frozenset[int]

    @classmethod
    def of(cls, ids: Iterable[int]) -> Exclusion:
        return cls(frozenset(int(i) for i in ids))

    def depth(self, k: int) -> int:
        """How many nearest items to ask for so that ``k`` remain once the excluded ones are dropped."""
        return k + len(self.ids)

    def apply(self, hits: Iterable[Neighbor], k: int) -> list[Neighbor]:
        """The first ``k`` of ``hits`` (nearest first) whose item is not excluded."""
        return [hit for hit in hits if hit.item.id not in self.ids][:k]
