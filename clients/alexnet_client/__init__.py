"""Python SDK for the AlexNet image classification and retrieval service.

::

    from alexnet_client import Client

    with Client("http://127.0.0.1:8000") as client:
        for result in client.classify(["cat.jpg", "dog.jpg"], top_k=3).results:
            print(result.filename, result.top.label, f"{result.top.probability:.3f}")
        for neighbor in client.similar("cat.jpg", k=5).neighbors:
            print(neighbor.id, neighbor.label, neighbor.distance)

``AsyncClient`` has the same methods for asyncio.
"""

from ._async_client import AsyncClient
from ._base import ImageInput
from ._client import Client
from ._exceptions import (
    APIConnectionError,
    APIError,
    APIResponseValidationError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    InternalServerError,
    NotFoundError,
    PayloadTooLargeError,
    PermissionDeniedError,
    RateLimitError,
    ServiceUnavailableError,
    UnprocessableEntityError,
    UnsupportedMediaTypeError,
)
from ._version import __version__

__all__ = [
    "__version__",
    "Client",
    "AsyncClient",
    "ImageInput",
    "APIError",
    "APIStatusError",
    "BadRequestError",
    "AuthenticationError",
    "PermissionDeniedError",
    "NotFoundError",
    "ConflictError",
    "PayloadTooLargeError",
    "UnsupportedMediaTypeError",
    "UnprocessableEntityError",
    "RateLimitError",
    "ServiceUnavailableError",
    "InternalServerError",
    "APIConnectionError",
    "APITimeoutError",
    "APIResponseValidationError",
]
