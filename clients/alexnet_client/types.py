"""Typed results of the API, parsed from its JSON.

Every class is a frozen dataclass with a ``from_json`` constructor that reads the keys the API
documents and ignores any others, so a newer server does not break an older client.
``dataclasses.asdict`` turns any of them back into plain JSON-able data.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "TTA",
    "Feature",
    "ModelRef",
    "Prediction",
    "Classification",
    "ClassifyResponse",
    "SimilarQuery",
    "Neighbor",
    "SimilarResponse",
    "IndexedItem",
    "IndexAddResponse",
    "IndexRemoveResponse",
    "Health",
    "Readiness",
    "ModelInfo",
]

TTA = Literal["ten_crop", "center"]
"""Test-time augmentation for classification: the mean of 10 crops' softmax, or the centre crop."""
Feature = Literal["center", "ten_crop"]
"""Which fc7 vector represents a retrieval query."""

_Json = Mapping[str, Any]


@dataclass(frozen=True)
class ModelRef:
    """The model version that produced a result."""

    name: str
    version: str

    @classmethod
    def from_json(cls, data: _Json) -> ModelRef:
        return cls(name=str(data["name"]), version=str(data["version"]))


@dataclass(frozen=True)
class Prediction:
    """One class and its probability."""

    index: int
    label: str
    probability: float

    @classmethod
    def from_json(cls, data: _Json) -> Prediction:
        return cls(index=int(data["index"]), label=str(data["label"]), probability=float(data["probability"]))


def _predictions(items: Any) -> tuple[Prediction, ...]:
    return tuple(Prediction.from_json(item) for item in items)


@dataclass(frozen=True)
class Classification:
    """The top-k predictions for one image, best first."""

    filename: str
    predictions: tuple[Prediction, ...]
    width: int
    height: int

    @property
    def top(self) -> Prediction:
        """The most probable class."""
        return self.predictions[0]

    @classmethod
    def from_json(cls, data: _Json) -> Classification:
        return cls(
            filename=str(data["filename"]),
            predictions=_predictions(data["predictions"]),
            width=int(data["width"]),
            height=int(data["height"]),
        )


@dataclass(frozen=True)
class ClassifyResponse:
    """Answer of ``POST /classify``: one ``Classification`` per image, in upload order."""

    model: ModelRef
    tta: str
    results: tuple[Classification, ...]
    elapsed_ms: float

    @classmethod
    def from_json(cls, data: _Json) -> ClassifyResponse:
        return cls(
            model=ModelRef.from_json(data["model"]),
            tta=str(data["tta"]),
            results=tuple(Classification.from_json(item) for item in data["results"]),
            elapsed_ms=float(data["elapsed_ms"]),
        )


@dataclass(frozen=True)
class SimilarQuery:
    """What the query was: a gallery item (``id``) or an uploaded image (``filename``)."""

    id: int | None
    filename: str | None
    label: str | None
    predictions: tuple[Prediction, ...]

    @classmethod
    def from_json(cls, data: _Json) -> SimilarQuery:
        return cls(
            id=None if data.get("id") is None else int(data["id"]),
            filename=data.get("filename"),
            label=data.get("label"),
            predictions=_predictions(data.get("predictions") or ()),
        )


@dataclass(frozen=True)
class Neighbor:
    """A gallery item near the query; smaller ``distance`` is closer."""

    id: int
    label: str
    distance: float
    thumbnail_url: str
    source: str | None

    @classmethod
    def from_json(cls, data: _Json) -> Neighbor:
        return cls(
            id=int(data["id"]),
            label=str(data["label"]),
            distance=float(data["distance"]),
            thumbnail_url=str(data["thumbnail_url"]),
            source=data.get("source"),
        )


@dataclass(frozen=True)
class SimilarResponse:
    """Answer of ``POST /similar``: the nearest gallery items, closest first."""

    model: ModelRef
    feature: str
    query: SimilarQuery
    neighbors: tuple[Neighbor, ...]
    elapsed_ms: float

    @classmethod
    def from_json(cls, data: _Json) -> SimilarResponse:
        return cls(
            model=ModelRef.from_json(data["model"]),
            feature=str(data["feature"]),
            query=SimilarQuery.from_json(data["query"]),
            neighbors=tuple(Neighbor.from_json(item) for item in data["neighbors"]),
            elapsed_ms=float(data["elapsed_ms"]),
        )


@dataclass(frozen=True)
class IndexedItem:
    """A gallery item the server added."""

    id: int
    label: str
    source: str | None = None
    thumbnail_url: str | None = None

    @classmethod
    def from_json(cls, data: _Json) -> IndexedItem:
        return cls(
            id=int(data["id"]),
            label=str(data["label"]),
            source=data.get("source"),
            thumbnail_url=data.get("thumbnail_url"),
        )


def _gallery_size(data: _Json) -> int | None:
    return None if data.get("gallery_size") is None else int(data["gallery_size"])


@dataclass(frozen=True)
class IndexAddResponse:
    """Answer of ``POST /index``: the new items, in upload order, and the gallery size after."""

    added: tuple[IndexedItem, ...]
    gallery_size: int | None = None

    @classmethod
    def from_json(cls, data: _Json) -> IndexAddResponse:
        # The API documents {"added": [...]}; the service also answers {"ids", "items", "gallery_size"}.
        items = data["added"] if "added" in data else data["items"]
        return cls(added=tuple(IndexedItem.from_json(item) for item in items), gallery_size=_gallery_size(data))


@dataclass(frozen=True)
class IndexRemoveResponse:
    """Answer of ``DELETE /index/{id}``: the id removed, and the gallery size after."""

    deleted: int
    gallery_size: int | None = None

    @classmethod
    def from_json(cls, data: _Json) -> IndexRemoveResponse:
        # Documented: {"deleted": id}; the service also answers {"id": id, "deleted": true, ...}.
        deleted = data["deleted"]
        if isinstance(deleted, bool):
            if not deleted:
                raise ValueError("the server answered deleted=false")
            deleted = data["id"]
        return cls(deleted=int(deleted), gallery_size=_gallery_size(data))


@dataclass(frozen=True)
class Health:
    """Answer of ``GET /healthz``: the process is up (the model may still be loading)."""

    status: str

    @classmethod
    def from_json(cls, data: _Json) -> Health:
        return cls(status=str(data["status"]))


@dataclass(frozen=True)
class Readiness:
    """Answer of ``GET /readyz``; ``ready`` is False when the server answered 503."""

    ready: bool
    status: str
    details: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: _Json, *, ready: bool) -> Readiness:
        status = data.get("status")
        error = data.get("error")
        if status is None and isinstance(error, Mapping):
            status = error.get("code")  # a 503 in the service's error shape
        details = {key: value for key, value in data.items() if key != "status"}
        return cls(ready=ready, status=str(status or ("ready" if ready else "not_ready")), details=details)


@dataclass(frozen=True)
class ModelInfo:
    """Answer of ``GET /v1/models``: the served model's manifest, its provider and gallery size.

    ``manifest`` holds the whole answer, for the fields not lifted into attributes.
    """

    name: str
    version: str
    variant: str
    labels: tuple[str, ...]
    feature_dim: int
    created: str | None
    provider: str
    gallery_size: int
    metrics: Mapping[str, Any]
    preprocessing: Mapping[str, Any]
    manifest: Mapping[str, Any]
    precision: str = "fp32"  # which model file and arithmetic serve (older services did not say: fp32)

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    @classmethod
    def from_json(cls, data: _Json) -> ModelInfo:
        # Documented: the manifest with "provider" and "gallery_size" beside its fields; the service
        # also answers {"models": [{"name", "version", "provider", "gallery_size", "manifest"}]}.
        if "models" in data:
            entry = data["models"][0]
            data = {**entry["manifest"], **{key: value for key, value in entry.items() if key != "manifest"}}
        return cls(
            name=str(data["name"]),
            version=str(data["version"]),
            variant=str(data.get("variant", "")),
            labels=tuple(str(label) for label in data["labels"]),
            feature_dim=int(data.get("feature_dim", 4096)),
            created=data.get("created"),
            provider=str(data["provider"]),
            gallery_size=int(data["gallery_size"]),
            metrics=dict(data.get("metrics") or {}),
            preprocessing=dict(data.get("preprocessing") or {}),
            manifest=dict(data),
            precision=str(data.get("precision", "fp32")),
        )
