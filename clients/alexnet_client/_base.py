"""What ``Client`` and ``AsyncClient`` share: configuration, how each endpoint's request is built
and its answer parsed, image inputs, and the retry policy. The two clients only add the sending
(blocking or awaitable) and the batch helpers."""

from __future__ import annotations

import io
import logging
import mimetypes
import os
import random
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any, Generic, TypeAlias, TypeGuard, TypeVar, Union

import httpx

from ._constants import (
    API_KEY_ENV,
    API_KEY_HEADER,
    BASE_URL_ENV,
    DEFAULT_BASE_URL,
    INITIAL_RETRY_DELAY,
    MAX_RETRY_AFTER,
    MAX_RETRY_DELAY,
    NON_IDEMPOTENT_RETRYABLE_STATUSES,
    RETRYABLE_STATUSES,
)
from ._exceptions import APIConnectionError, APIResponseValidationError, APITimeoutError, parse_retry_after
from ._version import __version__
from .types import (
    TTA,
    ClassifyResponse,
    ErrorResponse,
    Feature,
    HealthResponse,
    IndexAddResponse,
    IndexDeleteResponse,
    ModelInfo,
    ModelsResponse,
    Readiness,
    ReadyResponse,
    SimilarResponse,
)

if TYPE_CHECKING:
    import PIL.Image

log = logging.getLogger("alexnet_client")

ImageInput: TypeAlias = Union[str, "os.PathLike[str]", bytes, bytearray, memoryview, IO[bytes], "PIL.Image.Image"]
"""An image to upload: a file path, the encoded bytes, a binary file object or a PIL image."""

Upload: TypeAlias = tuple[str, bytes, str]
"""``(filename, content, content_type)`` as httpx takes a multipart file."""

T = TypeVar("T")

# Magic numbers of the formats an image server is likely to read, to label uploads honestly.
_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
    (b"BM", "image/bmp"),
    (b"II*\x00", "image/tiff"),
    (b"MM\x00*", "image/tiff"),
)
_EXTENSIONS = {
    "image/jpeg": ".jpg",
    "image/png": ".png",
    "image/gif": ".gif",
    "image/bmp": ".bmp",
    "image/tiff": ".tif",
    "image/webp": ".webp",
}
_PNG_MODES = frozenset({"1", "L", "LA", "I", "I;16", "P", "RGB", "RGBA"})


def _sniff_content_type(content: bytes) -> str | None:
    if content[:4] == b"RIFF" and content[8:12] == b"WEBP":
        return "image/webp"
    for signature, content_type in _SIGNATURES:
        if content.startswith(signature):
            return content_type
    return None


def _is_pil_image(obj: object) -> TypeGuard[PIL.Image.Image]:
    # PIL stays optional: an object can only be a PIL image if PIL has been imported already.
    pil_image = sys.modules.get("PIL.Image")
    return pil_image is not None and isinstance(obj, pil_image.Image)


def _is_single_image(obj: object) -> bool:
    return (
        isinstance(obj, str | bytes | bytearray | memoryview | os.PathLike)
        or hasattr(obj, "read")
        or _is_pil_image(obj)
    )


def image_list(images: ImageInput | Iterable[ImageInput]) -> list[ImageInput]:
    """One image or an iterable of them, as a list."""
    if _is_single_image(images):
        return [images]  # type: ignore[list-item]
    return list(images)  # type: ignore[arg-type]


def read_image(image: ImageInput, position: int = 0) -> Upload:
    """Turn an image input into an upload. The bytes are read here, once, so that a retried
    request sends the same content again (a file object can only be read once)."""
    name: str | None = None
    if isinstance(image, str | os.PathLike):
        path = os.fspath(image)
        with open(path, "rb") as fh:
            content = fh.read()
        name = os.path.basename(path)
    elif isinstance(image, bytes | bytearray | memoryview):
        content = bytes(image)
    elif _is_pil_image(image):
        return _encode_pil(image, position)
    elif hasattr(image, "read"):
        content = image.read()
        if not isinstance(content, bytes):
            raise TypeError("file objects must be opened in binary mode ('rb')")
        file_name = getattr(image, "name", None)
        name = os.path.basename(file_name) if isinstance(file_name, str) else None
    else:
        raise TypeError(
            f"unsupported image input {type(image).__name__}: pass a path, bytes, a binary file object or a PIL image"
        )
    content_type = (
        _sniff_content_type(content) or (name and mimetypes.guess_type(name)[0]) or "application/octet-stream"
    )
    return name or f"image-{position}{_EXTENSIONS.get(content_type, '')}", content, content_type


def _encode_pil(image: PIL.Image.Image, position: int) -> Upload:
    # PNG is lossless, so the server sees exactly these pixels.
    if image.mode not in _PNG_MODES:
        image = image.convert("RGB")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    source = getattr(image, "filename", "") or ""
    stem = os.path.splitext(os.path.basename(source))[0] if source else f"image-{position}"
    return f"{stem}.png", buffer.getvalue(), "image/png"


def retry_delay(attempt: int, retry_after: float | None) -> float:
    """Seconds to wait before retry number ``attempt + 1``: the server's ``Retry-After`` if it
    gave one (capped at ``MAX_RETRY_AFTER``), else jittered exponential back-off."""
    if retry_after is not None:
        return min(retry_after, MAX_RETRY_AFTER)
    backoff = min(INITIAL_RETRY_DELAY * 2.0**attempt, MAX_RETRY_DELAY)
    return backoff * (1.0 - 0.25 * random.random())


@dataclass(frozen=True)
class APICall(Generic[T]):
    """One endpoint call: how to send it and how to read its answer."""

    method: str
    path: str
    parse: Callable[[httpx.Response], T]
    data: Mapping[str, str | list[str]] | None = None
    files: Sequence[tuple[str, Upload]] | None = None
    # False for calls that change server state: only retried when the server cannot have acted.
    idempotent: bool = True
    retry: bool = True
    # Error statuses handed to ``parse`` instead of raised (503 for readiness).
    accept: frozenset[int] = frozenset()


def _json_body(response: httpx.Response) -> Mapping[str, Any]:
    try:
        body = response.json()
    except ValueError as exc:
        raise APIResponseValidationError(
            f"expected a JSON answer, got {response.text[:200]!r}", response=response
        ) from exc
    if not isinstance(body, dict):
        raise APIResponseValidationError(f"expected a JSON object, got {type(body).__name__}", response=response)
    return body


def _json_parser(from_json: Callable[[Mapping[str, Any]], T]) -> Callable[[httpx.Response], T]:
    def parse(response: httpx.Response) -> T:
        body = _json_body(response)
        try:
            return from_json(body)
        except (LookupError, TypeError, ValueError) as exc:
            raise APIResponseValidationError(
                f"unexpected answer from {response.request.method} {response.request.url.path}: {exc!r}",
                response=response,
            ) from exc

    return parse


def _parse_readiness(response: httpx.Response) -> Readiness:
    """200: the ``ReadyResponse``; 503: not ready, with the error's code and message (``unavailable``
    when the 503 is not the service's, e.g. a proxy's)."""
    if response.status_code == 200:
        return Readiness(ready=True, status="ready", details=_json_parser(ReadyResponse.from_json)(response))
    try:
        error = ErrorResponse.from_json(response.json()).error
    except (ValueError, LookupError, TypeError, AttributeError):
        return Readiness(ready=False, status="unavailable")
    return Readiness(ready=False, status=error.code, message=error.message)


def _first_model(models: ModelsResponse) -> ModelInfo:
    if not models.models:
        raise ValueError("the server lists no model")
    return models.models[0]


def _parse_thumbnail(response: httpx.Response) -> bytes:
    if not response.headers.get("content-type", "").startswith("image/"):
        raise APIResponseValidationError(
            f"expected an image, got {response.headers.get('content-type')!r}", response=response
        )
    return response.content


class BaseClient:
    """Configuration and request building common to ``Client`` and ``AsyncClient``."""

    base_url: str
    api_key: str | None
    timeout: httpx.Timeout
    max_retries: int

    def __init__(
        self,
        *,
        base_url: str | None,
        api_key: str | None,
        timeout: float | httpx.Timeout,
        max_retries: int,
        headers: Mapping[str, str] | None,
    ) -> None:
        if max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        self.base_url = (base_url or os.environ.get(BASE_URL_ENV) or DEFAULT_BASE_URL).rstrip("/")
        self.api_key = api_key if api_key is not None else os.environ.get(API_KEY_ENV) or None
        self.timeout = timeout if isinstance(timeout, httpx.Timeout) else httpx.Timeout(timeout)
        self.max_retries = max_retries
        self._headers = {"User-Agent": f"alexnet-client/{__version__}"}
        if self.api_key:
            self._headers[API_KEY_HEADER] = self.api_key
        self._headers.update(headers or {})

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self.base_url!r})"

    # -- sending ------------------------------------------------------------------------------

    def _build_request(self, http: httpx.Client | httpx.AsyncClient, call: APICall[Any]) -> httpx.Request:
        return http.build_request(
            call.method,
            self.base_url + call.path,
            data=call.data,
            files=list(call.files) if call.files else None,
            headers=self._headers,
            timeout=self.timeout,
        )

    def _retry_after_response(self, call: APICall[Any], attempt: int, response: httpx.Response) -> float | None:
        """Seconds to wait before retrying after this error answer, or None to give up."""
        statuses = RETRYABLE_STATUSES if call.idempotent else NON_IDEMPOTENT_RETRYABLE_STATUSES
        if not call.retry or attempt >= self.max_retries or response.status_code not in statuses:
            return None
        delay = retry_delay(attempt, parse_retry_after(response.headers.get("retry-after")))
        log.info(
            "%s %s answered %d; retrying in %.2fs (retry %d of %d)",
            call.method, call.path, response.status_code, delay, attempt + 1, self.max_retries,
        )  # fmt: skip
        return delay

    def _retry_after_error(self, call: APICall[Any], attempt: int, error: httpx.TransportError) -> float | None:
        """Seconds to wait before retrying after a transport error, or None to give up."""
        # A request that changes the gallery is retried only if it never reached the server.
        retryable = (
            (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)
            if call.idempotent
            else (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
        )
        if not call.retry or attempt >= self.max_retries or not isinstance(error, retryable):
            return None
        delay = retry_delay(attempt, None)
        log.info(
            "%s %s failed (%r); retrying in %.2fs (retry %d of %d)",
            call.method, call.path, error, delay, attempt + 1, self.max_retries,
        )  # fmt: skip
        return delay

    def _connection_error(self, error: httpx.TransportError, request: httpx.Request) -> APIConnectionError:
        if isinstance(error, httpx.TimeoutException):
            return APITimeoutError(f"request to {request.url} timed out ({error!r})", request=request)
        return APIConnectionError(f"could not reach {self.base_url}: {error}", request=request)

    # -- the endpoints ------------------------------------------------------------------------

    def _classify_call(
        self, images: ImageInput | Iterable[ImageInput], top_k: int, tta: TTA
    ) -> APICall[ClassifyResponse]:
        uploads = [read_image(image, i) for i, image in enumerate(image_list(images))]
        if not uploads:
            raise ValueError("classify needs at least one image")
        return APICall(
            "POST",
            "/classify",
            _json_parser(ClassifyResponse.from_json),
            data={"top_k": str(top_k), "tta": tta},
            files=[("files", upload) for upload in uploads],
        )

    def _similar_call(
        self, image: ImageInput | None, id: int | None, k: int, feature: Feature
    ) -> APICall[SimilarResponse]:
        if (image is None) == (id is None):
            raise ValueError("similar needs either an image or the id of a gallery item, not both")
        data: dict[str, str | list[str]] = {"k": str(k), "feature": feature}
        files = None
        if image is None:
            data["id"] = str(id)
        else:
            files = [("file", read_image(image))]
        return APICall("POST", "/similar", _json_parser(SimilarResponse.from_json), data=data, files=files)

    def _add_call(
        self, images: ImageInput | Iterable[ImageInput], labels: str | Sequence[str]
    ) -> APICall[IndexAddResponse]:
        uploads = [read_image(image, i) for i, image in enumerate(image_list(images))]
        if not uploads:
            raise ValueError("add_to_index needs at least one image")
        label_list = [labels] if isinstance(labels, str) else list(labels)
        if len(label_list) not in (1, len(uploads)):
            raise ValueError(
                f"got {len(label_list)} labels for {len(uploads)} images: give one for all or one per image"
            )
        return APICall(
            "POST",
            "/index",
            _json_parser(IndexAddResponse.from_json),
            data={"labels": label_list},
            files=[("files", upload) for upload in uploads],
            idempotent=False,
        )

    def _remove_call(self, id: int) -> APICall[IndexDeleteResponse]:
        return APICall("DELETE", f"/index/{int(id)}", _json_parser(IndexDeleteResponse.from_json))

    def _health_call(self) -> APICall[HealthResponse]:
        return APICall("GET", "/healthz", _json_parser(HealthResponse.from_json))

    def _ready_call(self) -> APICall[Readiness]:
        # "Not ready" is the answer, not a failure: report it at once instead of retrying.
        return APICall("GET", "/readyz", _parse_readiness, retry=False, accept=frozenset({503}))

    def _model_info_call(self) -> APICall[ModelInfo]:
        return APICall("GET", "/v1/models", _json_parser(lambda body: _first_model(ModelsResponse.from_json(body))))

    def _thumbnail_call(self, id: int) -> APICall[bytes]:
        return APICall("GET", f"/gallery/{int(id)}/thumbnail", _parse_thumbnail)


def chunks(items: list[T], size: int) -> list[list[T]]:
    """``items`` cut into lists of at most ``size``, in order."""
    if size < 1:
        raise ValueError("batch_size must be >= 1")
    return [items[i : i + size] for i in range(0, len(items), size)]
