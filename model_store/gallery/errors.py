"""The gallery's exceptions."""

from __future__ import annotations


class GalleryError(RuntimeError):
    """A gallery on disk is missing, inconsistent or corrupt."""


class GalleryConflict(GalleryError):
    """Another process is changing this gallery, or changed it after this process loaded it."""


class UnknownItemError(KeyError):
    """No gallery item has this id."""

    def __init__(self, item_id: int):
        super().__init__(item_id)
        self.item_id = item_id

    def __str__(self) -> str:
        return f"no gallery item has id {self.item_id}"
