"""Images for the service tests, made from real Caltech-101 photographs where a photo fits."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from image_helpers import encode
from PIL import Image
from service_helpers import FACE, WATCH

from model_store.preprocessing import decode_image

EXIF_ORIENTATION = 0x0112


@pytest.fixture(scope="session")
def face_jpeg(caltech_root: Path) -> bytes:
    return (caltech_root / FACE).read_bytes()


@pytest.fixture(scope="session")
def watch_jpeg(caltech_root: Path) -> bytes:
    return (caltech_root / WATCH).read_bytes()


@pytest.fixture(scope="session")
def photo(face_jpeg: bytes) -> Image.Image:
    return decode_image(face_jpeg)


@pytest.fixture(scope="session")
def odd_images(photo: Image.Image) -> dict[str, tuple[bytes, tuple[int, int]]]:
    """Valid images in awkward encodings -> (bytes, the upright size the service must report)."""
    small = photo.resize((photo.width // 2, photo.height // 2))
    gray16 = (np.asarray(small.convert("L"), dtype=np.uint16) * 257).astype(np.uint16)
    paletted = small.convert("P", palette=Image.Palette.ADAPTIVE, colors=64)
    rgba = small.convert("RGBA")
    rgba.putalpha(Image.linear_gradient("L").resize(small.size))
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = 6  # stored sideways: viewers rotate it 90 degrees clockwise
    size, turned = small.size, small.size[::-1]
    return {
        "cmyk.jpg": (encode(small.convert("CMYK"), "JPEG"), size),
        "gray16.png": (encode(Image.fromarray(gray16), "PNG"), size),
        "paletted-transparent.png": (encode(paletted, "PNG", transparency=0), size),
        "rgba.png": (encode(rgba, "PNG"), size),
        "grayscale.jpg": (encode(small.convert("L"), "JPEG"), size),
        "exif-rotated.jpg": (encode(small, "JPEG", exif=exif.tobytes()), turned),
        "photo.webp": (encode(small, "WEBP"), size),
    }


@pytest.fixture
def client(live_service) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live_service.url, timeout=60) as http:
        yield http
