"""The small JPEG thumbnails a gallery keeps for its items (Pillow only; made where an image is prepared,
``model_store.preprocessing.Preprocessor.prepare``)."""

from __future__ import annotations

import io

from PIL import Image

THUMBNAIL_SIZE = 96
THUMBNAIL_QUALITY = 85


def make_thumbnail(image: Image.Image, size: int = THUMBNAIL_SIZE) -> bytes:
    """A JPEG whose longer side is at most ``size`` px."""
    thumb = image.convert("RGB")
    thumb.thumbnail((size, size), Image.Resampling.BILINEAR)
    out = io.BytesIO()
    thumb.save(out, format="JPEG", quality=THUMBNAIL_QUALITY)
    return out.getvalue()
