"""Images for the service tests, made from real Caltech-101 photographs where a photo fits."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from PIL import Image
from service_helpers import FACE, WATCH, awkward_encodings

from model_store.preprocessing import decode_image


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
    return awkward_encodings(photo)


@pytest.fixture
def client(live_service) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live_service.url, timeout=60) as http:
        yield http
