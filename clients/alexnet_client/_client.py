"""The blocking client."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
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


class Client(BaseClient):
    """Blocking client of the AlexNet service.

    ``base_url`` defaults to ``$ALEXNET_API_URL`` (else ``http://127.0.0.1:8000``) and ``api_key``
    to ``$ALEXNET_API_KEY``; the key is only needed to change the gallery. Connection errors,
    timeouts and 408/429/502/503/504 answers are retried up to ``max_retries`` times with
    jittered exponential back-off, honouring ``Retry-After``. Pass ``http_client`` to use your
    own ``httpx.Client`` (proxies, TLS settings); it is then yours to close.

    Use it as a context manager, or call ``close()``::

        with Client() as client:
            result = client.classify("cat.jpg").results[0]
            print(result.top.label, result.top.probability)
    """

    def __init__(
        self,
        base_url: str | None = None,
        *,
        api_key: str | None = None,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        max_retries: int = DEFAULT_MAX_RETRIES,
        headers: Mapping[str, str] | None = None,
        http_client: httpx.Client | None = None,
    ) -> None:
        super().__init__(base_url=base_url, api_key=api_key, timeout=timeout, max_retries=max_retries, headers=headers)
        self._owns_http = http_client is None
        self._http = http_client if http_client is not None else httpx.Client()

    def close(self) -> None:
        """Close the connection pool (unless it came from the caller's ``http_client``)."""
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _send(self, call: APICall[T]) -> T:
        attempt = 0
        while True:
            request = self._build_request(self._http, call)
            try:
                response = self._http.send(request)
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
            time.sleep(delay)
            attempt += 1

    def classify(
        self, images: ImageInput | Iterable[ImageInput], top_k: int = 5, tta: TTA = "ten_crop"
    ) -> ClassifyResponse:
        """Classify one image or several in one request.

        ``images``: a path, bytes, a binary file object, a PIL image, or an iterable of these.
        ``tta="ten_crop"`` averages the softmax of the 10 crops (the paper's test-time
        augmentation); ``"center"`` uses the centre crop only. Results come in upload order.
        """
        return self._send(self._classify_call(images, top_k, tta))

    def classify_many(
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

        The first error is raised; requests not yet started are then cancelled.
        """
        if concurrency < 1:
            raise ValueError("concurrency must be >= 1")
        batches = chunks(image_list(images), batch_size)
        with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="alexnet-client") as pool:
            futures = [pool.submit(self.classify, batch, top_k, tta) for batch in batches]
            try:
                responses = [future.result() for future in futures]
            except BaseException:
                for future in futures:
                    future.cancel()
                raise
        return [result for response in responses for result in response.results]

    def similar(
        self, image: ImageInput | None = None, *, id: int | None = None, k: int = 6, feature: Feature = "center"
    ) -> SimilarResponse:
        """The ``k`` gallery items nearest to an uploaded ``image`` or to gallery item ``id``, by
        fc7 feature distance. ``feature`` picks the query vector: the centre crop's (default) or
        the mean over the 10 crops."""
        return self._send(self._similar_call(image, id, k, feature))

    def add_to_index(self, images: ImageInput | Iterable[ImageInput], labels: str | Sequence[str]) -> IndexAddResponse:
        """Add images to the retrieval gallery with one label for all or one label per image.
        Needs the API key. Not retried where the server may already have added them."""
        return self._send(self._add_call(images, labels))

    def remove_from_index(self, id: int) -> IndexDeleteResponse:
        """Remove gallery item ``id``. Needs the API key; ``NotFoundError`` if there is none."""
        return self._send(self._remove_call(id))

    def health(self) -> HealthResponse:
        """Liveness: the server process answers."""
        return self._send(self._health_call())

    def ready(self) -> Readiness:
        """Readiness: whether the model and index are loaded. A 503 gives ``ready=False`` at once
        (no retries) instead of raising."""
        return self._send(self._ready_call())

    def model_info(self) -> ModelInfo:
        """The served model's manifest (labels, preprocessing, metrics, ...), the ONNX Runtime
        provider it runs on and the gallery size."""
        return self._send(self._model_info_call())

    def thumbnail(self, id: int) -> bytes:
        """The JPEG thumbnail of gallery item ``id``."""
        return self._send(self._thumbnail_call(id))
