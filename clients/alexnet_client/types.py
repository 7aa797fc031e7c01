"""Typed results of the API, parsed from its JSON.

Each answer type is a frozen dataclass named, and with the fields named and typed, as the service's
response model of the same name (``service/schemas.py``; its OpenAPI document at
``/openapi.json``). ``from_json`` reads exactly those fields, checks each value's type and raises
``KeyError``/``TypeError``/``ValueError`` on a missing or mistyped one (the clients turn these into
``APIResponseValidationError``); keys it does not know are ignored, so a newer server with more
fields does not break an older client. tests/clients/test_contract.py compares every class here
with the service's OpenAPI schema, field by field, so neither side can change alone.
``dataclasses.asdict`` turns any of them back into the JSON the service sent.

Only ``Readiness`` is the SDK's own: ``ready()`` answers with it whether the service was ready
(``details``: its ``ReadyResponse``) or answered 503 (``status``: the error's code).
"""

from __future__ import annotations

import dataclasses
import sys
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, TypeVar, Union

__all__ = [
    "TTA",
    "Feature",
    "ModelRef",
    "Prediction",
    "ClassifyResult",
    "ClassifyResponse",
    "SimilarQuery",
    "Neighbor",
    "SimilarResponse",
    "IndexedItem",
    "IndexAddResponse",
    "IndexDeleteResponse",
    "HealthResponse",
    "ReadyResponse",
    "Readiness",
    "Manifest",
    "ModelInfo",
    "ModelsResponse",
    "ErrorBody",
    "ErrorResponse",
    "WIRE_TYPES",
]

TTA = Literal["ten_crop", "center"]
"""Test-time augmentation for classification: the mean of 10 crops' softmax, or the centre crop."""
Feature = Literal["center", "ten_crop"]
"""Which fc7 vector represents a retrieval query."""

_Json = Mapping[str, Any]
W = TypeVar("W", bound="WireType")


def _parse(annotation: Any, value: Any, where: str) -> Any:
    """``value`` (decoded JSON) as ``annotation``, or TypeError/ValueError naming ``where``."""
    origin = typing.get_origin(annotation)
    if annotation is Any:
        return value
    if origin in (Union, types.UnionType):
        options = typing.get_args(annotation)
        if value is None and type(None) in options:
            return None
        (inner,) = [option for option in options if option is not type(None)]  # X | None only
        return _parse(inner, value, where)
    if origin is Literal:
        if not any(value == allowed and type(value) is type(allowed) for allowed in typing.get_args(annotation)):
            raise ValueError(f"{where}: {value!r} is not one of {typing.get_args(annotation)}")
        return value
    if origin is tuple:
        if not isinstance(value, list):
            raise TypeError(f"{where}: expected a list, got {type(value).__name__}")
        item = typing.get_args(annotation)[0]
        return tuple(_parse(item, element, f"{where}[{i}]") for i, element in enumerate(value))
    if origin is Mapping:
        if not isinstance(value, dict):
            raise TypeError(f"{where}: expected an object, got {type(value).__name__}")
        item = typing.get_args(annotation)[1]
        return {str(key): _parse(item, element, f"{where}.{key}") for key, element in value.items()}
    if isinstance(annotation, type) and issubclass(annotation, WireType):
        if not isinstance(value, dict):
            raise TypeError(f"{where}: expected an object, got {type(value).__name__}")
        return annotation.from_json(value)
    if isinstance(value, bool) != (annotation is bool):  # JSON true is no number, 1 no boolean
        pass
    elif annotation is float and isinstance(value, int | float):
        return float(value)
    elif annotation in (int, str, bool) and isinstance(value, annotation):
        return value
    raise TypeError(f"{where}: expected {getattr(annotation, '__name__', annotation)}, got {type(value).__name__}")


class WireType:
    """Base of the answer types: ``from_json`` driven by the dataclass's own fields and annotations."""

    _hints: ClassVar[dict[str, Any] | None] = None

    @classmethod
    def wire_fields(cls) -> dict[str, Any]:
        """Field name -> type annotation, in order (resolved once per class)."""
        if cls.__dict__.get("_hints") is None:
            hints = typing.get_type_hints(cls, vars(sys.modules[cls.__module__]))
            cls._hints = {f.name: hints[f.name] for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        return cls._hints  # type: ignore[return-value]

    @classmethod
    def from_json(cls: type[W], data: _Json) -> W:
        values = {}
        for wire_field in dataclasses.fields(cls):  # type: ignore[arg-type]
            name = wire_field.name
            if name in data:
                values[name] = _parse(cls.wire_fields()[name], data[name], name)
            elif wire_field.default is dataclasses.MISSING and wire_field.default_factory is dataclasses.MISSING:
                raise KeyError(name)
        return cls(**values)


@dataclass(frozen=True)
class ModelRef(WireType):
    """The model version that produced a result."""

    name: str
    version: str


@dataclass(frozen=True)
class Prediction(WireType):
    """One class and its probability; ``index`` is the class's position in the manifest's labels."""

    index: int
    label: str
    probability: float


@dataclass(frozen=True)
class ClassifyResult(WireType):
    """The top-k predictions for one image, best first, and its upright decoded size."""

    filename: str
    predictions: tuple[Prediction, ...]
    width: int
    height: int

    @property
    def top(self) -> Prediction:
        """The most probable class."""
        return self.predictions[0]


@dataclass(frozen=True)
class ClassifyResponse(WireType):
    """Answer of ``POST /classify``: one ``ClassifyResult`` per image, in upload order."""

    model: ModelRef
    tta: TTA
    results: tuple[ClassifyResult, ...]
    elapsed_ms: float


@dataclass(frozen=True)
class SimilarQuery(WireType):
    """What the query was: a gallery item (``id``, ``label``) or an uploaded image (``filename``,
    ``predictions``: its top-5 classes; None for a gallery item)."""

    id: int | None
    filename: str | None
    label: str | None
    predictions: tuple[Prediction, ...] | None


@dataclass(frozen=True)
class Neighbor(WireType):
    """A gallery item near the query; smaller ``distance`` (Euclidean, fc7) is closer."""

    id: int
    label: str
    distance: float
    thumbnail_url: str
    source: str | None


@dataclass(frozen=True)
class SimilarResponse(WireType):
    """Answer of ``POST /similar``: the nearest gallery items, closest first."""

    model: ModelRef
    feature: Feature
    query: SimilarQuery
    neighbors: tuple[Neighbor, ...]
    elapsed_ms: float


@dataclass(frozen=True)
class IndexedItem(WireType):
    """A gallery item the server added."""

    id: int
    label: str
    source: str | None
    thumbnail_url: str


@dataclass(frozen=True)
class IndexAddResponse(WireType):
    """Answer of ``POST /index``: the new items' ids and the items, in upload order, and the
    gallery size after."""

    ids: tuple[int, ...]
    items: tuple[IndexedItem, ...]
    gallery_size: int

    @property
    def added(self) -> tuple[IndexedItem, ...]:
        """The new items (``items``)."""
        return self.items


@dataclass(frozen=True)
class IndexDeleteResponse(WireType):
    """Answer of ``DELETE /index/{id}``: the id removed (``deleted`` is always True), and the
    gallery size after."""

    id: int
    deleted: Literal[True]
    gallery_size: int


@dataclass(frozen=True)
class HealthResponse(WireType):
    """Answer of ``GET /healthz``: the process is up (the model may still be loading)."""

    status: Literal["ok"]


@dataclass(frozen=True)
class ReadyResponse(WireType):
    """Answer of ``GET /readyz`` when the service is ready: what it serves and how."""

    status: Literal["ready"]
    model: ModelRef
    provider: str
    precision: str
    runtime: str
    runtime_reason: str
    inference_workers: int
    threads_per_run: int
    decode_threads: int
    gallery_size: int


@dataclass(frozen=True)
class Readiness:
    """What ``ready()`` found: ``ready`` and ``details`` (the ``ReadyResponse``) when the service
    answered 200; otherwise ``ready`` False, ``status`` the 503's error code (``not_ready``) and
    ``message`` its message."""

    ready: bool
    status: str
    details: ReadyResponse | None = None
    message: str | None = None


@dataclass(frozen=True)
class Manifest(WireType):
    """A published model version's manifest (``model_store/manifest.py``). ``metrics`` holds
    ``test`` (per test-time augmentation) when the version was evaluated on its test split."""

    schema_version: int
    name: str
    version: str
    labels: tuple[str, ...]
    feature_dim: int
    variant: str
    preprocessing: Mapping[str, Any]
    onnx: Mapping[str, Any]
    created: str | None = None
    recipe: Mapping[str, Any] = field(default_factory=dict)
    metrics: Mapping[str, Any] = field(default_factory=dict)
    files: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ModelInfo(WireType):
    """One entry of ``GET /v1/models``: the served version, the provider it runs on, the precision
    it serves, the gallery size and the manifest (whose fields the properties lift)."""

    name: str
    version: str
    provider: str
    precision: str
    gallery_size: int
    manifest: Manifest

    @property
    def labels(self) -> tuple[str, ...]:
        return self.manifest.labels

    @property
    def num_classes(self) -> int:
        return len(self.manifest.labels)

    @property
    def variant(self) -> str:
        return self.manifest.variant

    @property
    def feature_dim(self) -> int:
        return self.manifest.feature_dim

    @property
    def created(self) -> str | None:
        return self.manifest.created

    @property
    def metrics(self) -> Mapping[str, Any]:
        return self.manifest.metrics

    @property
    def preprocessing(self) -> Mapping[str, Any]:
        return self.manifest.preprocessing


@dataclass(frozen=True)
class ModelsResponse(WireType):
    """Answer of ``GET /v1/models`` (``model_info()`` returns its one entry)."""

    models: tuple[ModelInfo, ...]


@dataclass(frozen=True)
class ErrorBody(WireType):
    code: str
    message: str


@dataclass(frozen=True)
class ErrorResponse(WireType):
    """Every error answer of the service: ``{"error": {"code": ..., "message": ...}}``."""

    error: ErrorBody


WIRE_TYPES: tuple[type[WireType], ...] = (
    ModelRef, Prediction, ClassifyResult, ClassifyResponse, SimilarQuery, Neighbor, SimilarResponse, IndexedItem,
    IndexAddResponse, IndexDeleteResponse, HealthResponse, ReadyResponse, Manifest, ModelInfo, ModelsResponse,
    ErrorBody, ErrorResponse,
)  # fmt: skip
"""Every class parsed from the service's JSON (each named as its schema in the service's OpenAPI)."""

# The names of earlier releases.
Classification = ClassifyResult
IndexRemoveResponse = IndexDeleteResponse
Health = HealthResponse
