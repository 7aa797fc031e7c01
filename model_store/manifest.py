"""The manifest schema: what a published model version carries besides its weights."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

MANIFEST_FILE = "manifest.json"
MODEL_FILE = "model.onnx"
INT8_MODEL_FILE = "model.int8.onnx"  # optional: the int8 (QDQ) model, built at publish time
# optional: the graph OpenVINO runs in bf16 (AMX): model.onnx's weights (fp32, rounded to bf16 at
# load) with LRN as one ONNX node, built at publish time
BF16_MODEL_FILE = "model.bf16.onnx"
MODEL_FILES = {"fp32": MODEL_FILE, "int8": INT8_MODEL_FILE, "bf16": BF16_MODEL_FILE}  # precision -> file
MEAN_FILE = "mean.npy"
METRICS_FILE = "metrics.json"
# publish-time checks the manifest records (``metrics``): the largest relative difference from PyTorch that a
# published ONNX graph may have on the parity images (of each output's largest magnitude; fp32 on CPU is ~1e-6),
# and the metric under which the bf16 graph's check is kept (what `runtime=auto` takes as verified)
PARITY_RTOL = 1e-3
BF16_PARITY_METRIC = "bf16_graph_parity"
SCHEMA_VERSION = 1


class PreprocessingSpec(BaseModel):
    """How inputs must be made; ``model_store.preprocessing.Preprocessor`` applies it."""

    model_config = ConfigDict(extra="forbid")

    resize: int = 256
    crop: int = 224
    scale: float = Field(1.0, description="pixel values are multiplied by this before the mean is subtracted")
    mean_kind: Literal["image", "channel"] = "image"
    mean_file: str = MEAN_FILE
    color: Literal["RGB"] = "RGB"
    layout: Literal["NCHW"] = "NCHW"
    interpolation: Literal["bilinear"] = "bilinear"


class OnnxSignature(BaseModel):
    input: str = "images"
    logits: str = "logits"
    features: str = "features"


class Manifest(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    schema_version: int = SCHEMA_VERSION
    name: str
    version: str = ""
    created: str = Field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    labels: list[str]
    feature_dim: int = 4096
    variant: str
    preprocessing: PreprocessingSpec = PreprocessingSpec()
    onnx: OnnxSignature = OnnxSignature()
    recipe: dict[str, Any] = Field(default_factory=dict, description="training settings and deviations")
    metrics: dict[str, Any] = Field(default_factory=dict)
    files: dict[str, str] = Field(default_factory=dict, description="sha256 of every file in the version")

    @property
    def num_classes(self) -> int:
        return len(self.labels)
