"""Response models of every route (the SDK mirrors these)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from model_store.manifest import Manifest
from model_store.preprocessing import Tta
from service.retrieval import Feature


class ErrorBody(BaseModel):
    code: str = Field(description="stable machine-readable code, e.g. bad_image, payload_too_large, overloaded")
    message: str


class ErrorResponse(BaseModel):
    error: ErrorBody


class ModelRef(BaseModel):
    name: str
    version: str

    @classmethod
    def of(cls, manifest: Manifest) -> ModelRef:
        return cls(name=manifest.name, version=manifest.version)


class Prediction(BaseModel):
    index: int = Field(description="class index (the manifest's label order)")
    label: str
    probability: float


class ClassifyResult(BaseModel):
    filename: str
    predictions: list[Prediction]
    width: int = Field(description="of the decoded image after its EXIF orientation is applied")
    height: int


class ClassifyResponse(BaseModel):
    model: ModelRef
    tta: Tta
    results: list[ClassifyResult]
    elapsed_ms: float


class SimilarQuery(BaseModel):
    id: int | None = Field(description="the gallery item queried, or null for an uploaded file")
    filename: str | None
    label: str | None = Field(description="the gallery item's label (null for an uploaded file)")
    predictions: list[Prediction] | None = Field(
        description="top-5 classes of an uploaded file (null for a gallery item: only its fc7 vector is stored)"
    )


class Neighbor(BaseModel):
    id: int
    label: str
    distance: float = Field(description="Euclidean distance between fc7 vectors (not squared)")
    thumbnail_url: str = Field(description="path of the item's JPEG thumbnail on this server")
    source: str | None = Field(description="dataset path relative to the data root, or upload:<filename>")


class SimilarResponse(BaseModel):
    model: ModelRef
    feature: Feature = Field(description="query vector: centre-crop fc7, or the mean fc7 of the ten crops")
    query: SimilarQuery
    neighbors: list[Neighbor]
    elapsed_ms: float


class IndexedItem(BaseModel):
    id: int
    label: str
    source: str | None
    thumbnail_url: str


class IndexAddResponse(BaseModel):
    ids: list[int]
    items: list[IndexedItem]
    gallery_size: int


class IndexDeleteResponse(BaseModel):
    id: int
    deleted: Literal[True] = True
    gallery_size: int


class HealthResponse(BaseModel):
    status: Literal["ok"] = "ok"


class ReadyResponse(BaseModel):
    status: Literal["ready"] = "ready"
    model: ModelRef
    provider: str
    precision: str = Field(description="fp32, int8 or bf16: which model file and arithmetic serve")
    runtime: str = Field(description="onnxruntime or openvino: the inference runtime serving")
    runtime_reason: str = Field(
        description="why this runtime and precision: 'set: ...' (ALEXNET_RUNTIME / ALEXNET_MODEL_PRECISION) or"
        " 'auto: ...' (what the CPU, the installed runtimes and the version's verified models allowed)"
    )
    inference_workers: int = Field(description="batches the model runs at once, each on its own thread")
    threads_per_run: int = Field(description="the runtime's threads per run (0: the runtime chooses)")
    decode_threads: int = Field(description="threads decoding and preprocessing uploads")
    gallery_size: int


class ModelInfo(BaseModel):
    name: str
    version: str
    provider: str = Field(description="ONNX Runtime execution provider (or OpenVINO device) in use")
    precision: str = Field(description="fp32, int8 or bf16: which model file and arithmetic serve")
    gallery_size: int
    manifest: Manifest


class ModelsResponse(BaseModel):
    models: list[ModelInfo]


class ReloadResponse(BaseModel):
    reloaded: bool = Field(description="false when the configured version still resolves to the one served")
    model: ModelRef = Field(description="the version served from now on")
    previous: ModelRef
