"""Which fc7 vector stands for an image in a gallery: its centre crop's. The gallery build, the
service's adds and its queries by item id all rely on this one rule (docs/gallery.md)."""

from __future__ import annotations

from typing import Final

import numpy as np

GALLERY_FEATURE: Final = "center"  # the crops (model_store.preprocessing ``tta``) a gallery vector comes from


def gallery_vector(fc7_rows: np.ndarray) -> np.ndarray:
    """An image's gallery vector from the fc7 rows [crops, dim] of its ``GALLERY_FEATURE`` crops:
    the centre crop's row (the only one)."""
    return fc7_rows[0]
