"""Assertions and paths shared by the service tests (fixtures live in conftest.py)."""

from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np
from image_helpers import encode
from PIL import Image

FACE = Path("images/Faces/image_0004.jpg")  # test30 split, 538x355
WATCH = Path("images/watch/image_0001.jpg")  # train80 split, 300x242
EXIF_ORIENTATION = 0x0112


def assert_error(response: httpx.Response, status: int, code: str | None = None) -> dict:
    """The service's error shape, with no traceback leaking out."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    assert body["error"]["message"] and "Traceback" not in response.text
    if code is not None:
        assert body["error"]["code"] == code, body
    return body["error"]


def assert_serving(http: httpx.Client, jpeg: bytes) -> None:
    """Still ready and still answering correctly."""
    assert http.get("/readyz").status_code == 200
    response = http.post("/classify", files={"files": ("ok.jpg", jpeg, "image/jpeg")}, data={"tta": "center"})
    assert response.status_code == 200, response.text


def awkward_encodings(photo: Image.Image) -> dict[str, tuple[bytes, tuple[int, int]]]:
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
