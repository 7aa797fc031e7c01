"""Small image generators and Caltech-101 paths shared by the unit tests (no fixtures here)."""

from __future__ import annotations

import io
import os
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

# The shared dataset beside this checkout (../shared/datasets/caltech101), or ALEXNET_DATA.
CALTECH_ROOT = Path(
    os.environ.get("ALEXNET_DATA") or Path(__file__).resolve().parents[2] / "shared" / "datasets" / "caltech101"
)
CALTECH_IMAGES = CALTECH_ROOT / "images"
# One of the dataset's 361 grayscale JPEGs (mode "L"), found by scanning the headers once.
CALTECH_GRAYSCALE = CALTECH_IMAGES / "Motorbikes" / "image_0512.jpg"
# A few test-split images from different classes (RGB, varied sizes).
CALTECH_SAMPLES = [
    CALTECH_IMAGES / "Faces" / "image_0004.jpg",
    CALTECH_IMAGES / "accordion" / "image_0001.jpg",
    CALTECH_IMAGES / "Leopards" / "image_0001.jpg",
]


def encode(img: Image.Image, fmt: str = "JPEG", **save_kwargs) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **save_kwargs)
    return buf.getvalue()


def position_chw(size: int) -> np.ndarray:
    """float32 [3,size,size]: channel 0 is the row index, channel 1 the column, channel 2 zero."""
    rows, cols = np.indices((size, size), dtype=np.float32)
    return np.stack([rows, cols, np.zeros_like(rows)])


def position_image(size: int = 256) -> Image.Image:
    """RGB image whose red value is the row and green value the column (size <= 256)."""
    chw = position_chw(size).astype(np.uint8)
    return Image.fromarray(np.ascontiguousarray(chw.transpose(1, 2, 0)), "RGB")


def png_declaring(width: int, height: int) -> bytes:
    """A tiny, hand-made PNG whose header declares ``width`` x ``height`` RGB but holds no pixel data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")
