"""Fixtures of the reliability tests (the servers themselves come from tests/conftest.py:
``start_service`` on ``private_store``, a copy of the tiny model's store that a test may change)."""

from __future__ import annotations

from pathlib import Path

import pytest

FACE = Path("images/Faces/image_0004.jpg")  # test30 split, 538x355
WATCH = Path("images/watch/image_0001.jpg")  # train80 split, 300x242


@pytest.fixture(scope="session")
def photo_jpeg(caltech_root: Path) -> bytes:
    return (caltech_root / FACE).read_bytes()


@pytest.fixture(scope="session")
def other_jpeg(caltech_root: Path) -> bytes:
    return (caltech_root / WATCH).read_bytes()
