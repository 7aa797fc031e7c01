"""The asyncio client: the same methods as ``Client``, awaitable."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping, Sequence
from types import TracebackType
from typing import TypeVar

import httpx

from ._base import APICall, BaseClient, ImageInput, chunks, image_list
from ._constants import DEFAULT_CONCURRENCY, DEFAULT_MAX_RETRIES, DEFAULT_TIMEOUT
from ._exceptions import make_status_error
from .types import (
    TTA,
    ClassifyResponse,
    ClassifyResult,
    Feature,
    HealthResponse,
    IndexAddResponse,
    IndexDeleteResponse,
    ModelInfo,
    Readiness,
    SimilarResponse,
)

T = TypeVar("T")


class AsyncClient(BaseClient):
    """Asyncio client of the AlexNet service; see ``Client`` for the settings and retries.

    ::

        async with AsyncClient() as client:
            results = await client.classify_many(paths, concurrency=8)
    """

    def __init__(
        self,
        base_url: str | None = None,
        *,
        api_key: str | None = None,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        max_retries: int = DEFAULT_MAX_RETRIES,
        headers: Mapping[str, str] | None = None,
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        super().__init__(base_url=base_url, api_key=api_key, timeout=timeout, max_retries=max_retries, headers=headers)
        self._owns_http = http_client is None
        self._http = http_client if http_client is not None else httpx.AsyncClient()

    async def aclose(self) -> None:
        """Close the connection pool (unless it came from the caller's ``http_client``)."""
        if self._owns_http:
            await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def _send(self, call: APICall[T]) -> T:
        attempt = 0
        while True:
            request = self._build_request(self._http, call)
            try:
                response = await self._http.send(request)
            except httpx.TransportError as error:
                delay = self._retry_after_error(call, attempt, error)
                if delay is None:
                    raise self._connection_error(error, request) from error
            else:
                if response.is_success or response.status_code in call.accept:
                    return call.parse(response)
                delay = self._retry_after_response(call, attempt, response)
                if delay is None:
                    raise make_status_error(response)
            await asyncio.sleep(delay)
            attempt += 1

    async def classify(
        self, images: ImageInput | Iterable[ImageInput], top_k: int = 5, tta: TTA = "ten_crop"
    ) -> ClassifyResponse:
        """Classify one image or several in one request; see ``Client.classify``."""
        return await self._send(self._classify_call(images, top_k, tta))

    async def classify_many(
        self,
        images: Iterable[ImageInput],
        concurrency: int = DEFAULT_CONCURRENCY,
        *,
        batch_size: int = 1,
        top_k: int = 5,
        tta: TTA = "ten_crop",
    ) -> list[ClassifyResult]:
        """Classify many images with at most ``concurrency`` requests in flight, ``batch_size``
        images per request; returns one ``ClassifyResult`` per image, in input order.

        The first error is raised and the other requests are cancelled.
        """
        if concurrency < 1:
            raise ValueError("concurrency must be >= 1")
        semaphore = asyncio.Semaphore(concurrency)

        async def classify_batch(batch: list[ImageInput]) -> ClassifyResponse:
            async with semaphore:
                return await self.classify(batch, top_k, tta)

        tasks = [asyncio.ensure_future(classify_batch(batch)) for batch in chunks(image_list(images), batch_size)]
        try:
            responses = await asyncio.gather(*tasks)
        except BaseException:
            for task in tasks:
                task.cancel()
            raise
        return [result for response in responses for result in response.results]

    async def similar(
        self, image: ImageInput | None = None, *, id: int | None = None, k: int = 6, feature: Feature = "center"
    ) -> SimilarResponse:
        """The ``k`` gallery items nearest to ``image`` or to gallery item ``id``; see ``Client.similar``."""
        return await self._send(self._similar_call(image, id, k, feature))

    async def add_to_index(
        self, images: ImageInput | Iterable[ImageInput], labels: str | Sequence[str]
    ) -> IndexAddResponse:
        """Add images to the gallery (needs the API key); see ``Client.add_to_index``."""
        return await self._send(self._add_call(images, labels))

    async def remove_from_index(self, id: int) -> IndexDeleteResponse:
        """Remove gallery item ``id`` (needs the API key)."""
        return await self._send(self._remove_call(id))

    async def health(self) -> HealthResponse:
        """Liveness: the server process answers."""
        return await self._send(self._health_call())

    async def ready(self) -> Readiness:
        """Readiness; a 503 gives ``ready=False`` at once instead of raising."""
        return await self._send(self._ready_call())

    async def model_info(self) -> ModelInfo:
        """The served model's manifest, ONNX Runtime provider and gallery size."""
        return await self._send(self._model_info_call())

    async def thumbnail(self, id: int) -> bytes:
        """The JPEG thumbnail of gallery item ``id``."""
        return await self._send(self._thumbnail_call(id))
