"""Fixtures of the SDK and CLI tests.

The SDK and the CLI are tested against the real service app on the fake model
(tests/fake_serving.py; ``fast``/``start_fast`` from tests/conftest.py): the routes, the checks and
the error bodies the SDK meets are the service's own, never a copy. ``serve(app)`` runs an ASGI app
on loopback (uvicorn in a thread) where a real socket is wanted (the CLI, its console script) or
where a test scripts the answers itself (retries, concurrency).
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import pytest
from fake_serving import run_server
from PIL import Image


@pytest.fixture
def serve() -> Iterator[Callable[[Any], str]]:
    """``serve(app) -> base URL``; every server started is stopped after the test."""
    with ExitStack() as stack:
        yield lambda app: stack.enter_context(run_server(app))


def encode_image(
    size: tuple[int, int] = (40, 30), color: tuple[int, int, int] = (200, 30, 30), fmt: str = "JPEG"
) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, fmt)
    return buffer.getvalue()


@pytest.fixture
def make_image() -> Callable[..., bytes]:
    """``make_image(size=(40, 30), color=(200, 30, 30), fmt="JPEG") -> encoded bytes``."""
    return encode_image


@pytest.fixture(autouse=True)
def _no_client_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests say where the client connects; the developer's environment must not."""
    monkeypatch.delenv("ALEXNET_API_URL", raising=False)
    monkeypatch.delenv("ALEXNET_API_KEY", raising=False)
