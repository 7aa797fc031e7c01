"""The retrieval gallery of a model version: fc7 vectors in FAISS, item metadata and thumbnails.
Its design (layout, formats, change log, compaction, snapshots, the writer lock) is in
docs/gallery.md; each module here does one of its jobs. Only numpy, faiss and Pillow are used
(the service must not need torch)."""

from model_store.gallery.compaction import Compaction
from model_store.gallery.errors import GalleryConflict, GalleryError, UnknownItemError
from model_store.gallery.faiss_ops import (
    add_vectors,
    as_ids,
    as_vectors,
    euclidean,
    new_index,
    remove_vectors,
    search_index,
    to_search_device,
)
from model_store.gallery.feature import GALLERY_FEATURE, gallery_vector
from model_store.gallery.gallery import Gallery
from model_store.gallery.items import Exclusion, GalleryItem, Neighbor
from model_store.gallery.storage import GALLERY_FILE, THUMBS_DIR
from model_store.thumbnails import make_thumbnail

__all__ = [
    "GALLERY_FEATURE",
    "GALLERY_FILE",
    "THUMBS_DIR",
    "Compaction",
    "Exclusion",
    "Gallery",
    "GalleryConflict",
    "GalleryError",
    "GalleryItem",
    "Neighbor",
    "UnknownItemError",
    "add_vectors",
    "as_ids",
    "as_vectors",
    "euclidean",
    "gallery_vector",
    "make_thumbnail",
    "new_index",
    "remove_vectors",
    "search_index",
    "to_search_device",
]
