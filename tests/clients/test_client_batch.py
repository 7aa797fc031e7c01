"""classify_many: bounded concurrency, input order, batching and failure, for both clients, against
a real app that records how many requests it is serving at once."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from alexnet_client import AsyncClient, BadRequestError, Client
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route


class InFlight:
    """A /classify that holds each request for a moment and records the most served at once.
    An upload whose content is b"bad" gets a 400."""

    def __init__(self, hold: float = 0.05) -> None:
        self.hold = hold
        self.in_flight = 0
        self.max_in_flight = 0
        self.files_per_request: list[int] = []

    async def classify(self, request: Request) -> Response:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            form = await request.form()
            files = form.getlist("files")
            self.files_per_request.append(len(files))
            await asyncio.sleep(self.hold)
            results = []
            for upload in files:
                content = await upload.read()  # type: ignore[union-attr]
                if content == b"bad":
                    return JSONResponse({"error": {"code": "invalid_image", "message": "bad"}}, status_code=400)
                prediction = {"index": 0, "label": content.decode(), "probability": 1.0}
                results.append({"filename": upload.filename, "predictions": [prediction], "width": 1, "height": 1})  # type: ignore[union-attr]
            model = {"name": "m", "version": "v1"}
            return JSONResponse({"model": model, "tta": form["tta"], "results": results, "elapsed_ms": 1.0})
        finally:
            self.in_flight -= 1

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/classify", self.classify, methods=["POST"])])


IMAGES = [f"img{i:02d}".encode() for i in range(12)]


def classify_many(kind: str, url: str, images: list[Any], **kwargs: Any) -> list[Any]:
    if kind == "sync":
        with Client(url, max_retries=0) as client:
            return client.classify_many(images, **kwargs)

    async def run() -> list[Any]:
        async with AsyncClient(url, max_retries=0) as client:
            return await client.classify_many(images, **kwargs)

    return asyncio.run(run())


@pytest.fixture(params=["sync", "async"])
def kind(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.mark.parametrize("concurrency", [1, 3])
def test_concurrency_is_bounded_and_order_kept(serve: Callable[[Any], str], kind: str, concurrency: int) -> None:
    server = InFlight()
    results = classify_many(kind, serve(server.app()), IMAGES, concurrency=concurrency, tta="center")

    assert [r.top.label for r in results] == [image.decode() for image in IMAGES]
    assert server.max_in_flight == concurrency
    assert server.files_per_request == [1] * len(IMAGES)


def test_batch_size_groups_images_per_request(serve: Callable[[Any], str], kind: str) -> None:
    server = InFlight()
    results = classify_many(kind, serve(server.app()), IMAGES[:7], concurrency=2, batch_size=3)

    assert [r.top.label for r in results] == [image.decode() for image in IMAGES[:7]]
    assert sorted(server.files_per_request) == [1, 3, 3]
    assert server.max_in_flight == 2


def test_first_error_is_raised(serve: Callable[[Any], str], kind: str) -> None:
    server = InFlight()
    with pytest.raises(BadRequestError):
        classify_many(kind, serve(server.app()), [*IMAGES[:3], b"bad", *IMAGES[3:]], concurrency=2)
    assert len(server.files_per_request) < len(IMAGES) + 1  # the requests still queued were cancelled


def test_arguments_are_checked(kind: str) -> None:
    with pytest.raises(ValueError, match="concurrency"):
        classify_many(kind, "http://127.0.0.1:9", IMAGES, concurrency=0)
    with pytest.raises(ValueError, match="batch_size"):
        classify_many(kind, "http://127.0.0.1:9", IMAGES, batch_size=0)
