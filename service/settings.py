"""All of the service's configuration, read from ``ALEXNET_*`` environment variables (or passed to
``create_app``). Bad values fail at start-up, not on the first request."""

from __future__ import annotations

import argparse
import re
import textwrap
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

MIB = 1024 * 1024
MIN_API_KEY_LENGTH = 16
TEN_CROP = 10
_VERSION_RE = re.compile(r"^(latest|v\d+)$")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")  # as model_store.store accepts
_ORIGIN_RE = re.compile(r"^(\*|https?://[^/\s]+)$")
_MILVUS_URI_RE = re.compile(r"^(https?://[^/\s]+/?|[^\s]*\.db)$")
_PATTERNS = {  # the settings checked against a pattern, and what to say when they do not match
    "model_name": (_NAME_RE, "use letters, digits, '.', '_' or '-' (at most 64)"),
    "model_version": (_VERSION_RE, "must be 'latest' or vN"),
    "milvus_uri": (_MILVUS_URI_RE, "must be a path ending in .db (milvus-lite) or http(s)://host[:port]"),
}
_COLLECTION_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,199}$")  # Milvus takes 255: room for a seeding suffix


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ALEXNET_", extra="ignore", frozen=True, protected_namespaces=())

    # server
    host: str = Field("127.0.0.1", description="address uvicorn binds (python -m service)")
    port: int = Field(8000, ge=1, le=65535, description="port uvicorn listens on (python -m service)")
    log_level: Literal["critical", "error", "warning", "info", "debug"] = Field("info", description="log level")
    access_log: bool = Field(True, description="uvicorn's access log, a line per request")
    log_format: Literal["text", "json"] = Field(
        "text",
        description="text: uvicorn's lines (access lines end with the request id); json: one JSON object per line"
        " (time, level, logger, message, and request_id for the lines written for a request; the access lines'"
        " fields too)",
    )
    opentelemetry: bool = Field(
        False,
        description="FastAPI's native OpenTelemetry (traces, metrics and logs to the global providers); off, FastAPI"
        " skips its per-request provider lookups (the service's own metrics are on /metrics either way)",
    )

    # model
    store_root: Path = Field(Path("store"), description="model store folder, relative to the working directory")
    model_name: str = Field("alexnet-caltech101", description="the published model to serve")
    model_version: str = Field("latest", description="vN, or latest for the highest published version")
    providers: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="auto: CUDA when ONNX Runtime offers it, else CPU; cuda: fail at start-up without it"
    )
    cuda_conv_algo_search: Literal["heuristic", "exhaustive", "default"] = Field(
        "heuristic",
        description="how ONNX Runtime's CUDA provider picks cuDNN convolution kernels. exhaustive benchmarks every"
        " new input shape, and the service's batches take many shapes: each new one stalls the GPU"
        " (benchmarks/results/service_gpu_h100.md); heuristic picks at once",
    )
    intra_op_threads: int = Field(
        0,
        ge=0,
        description="runtime threads per run; 0: on ONNX Runtime's CPU provider, the usable physical cores"
        " (affinity mask, cgroup quota) over inference_workers; other runtimes choose their own",
    )
    inference_workers: int = Field(
        1,
        ge=1,
        description="batches run at once, each on its own thread; a batch that finds several idle is split"
        " across them (more than 1 forms smaller batches: see batch_max_wait_ms)",
    )
    runtime: Literal["auto", "onnxruntime", "openvino"] = Field(
        "auto",
        description="inference runtime; openvino (CPU only; the extra `openvino`) uses AMX/VNNI; auto: openvino where"
        " model_precision auto picks bf16, else onnxruntime (service/runtime.py; /readyz says which and why)",
    )
    model_precision: Literal["auto", "fp32", "int8", "bf16"] = Field(
        "auto",
        description="fp32 (model.onnx), int8 (model.int8.onnx, built at publish time) or bf16 (model.bf16.onnx run in"
        " bf16 by OpenVINO); auto: bf16 where the CPU has avx512_bf16 or amx_bf16, OpenVINO is installed, no GPU"
        " serves and the version's bf16 model passed its parity check at publish time, else fp32",
    )
    intra_op_spinning: bool = Field(
        True,
        description="ONNX Runtime's threads spin between runs (its default); off frees the cores for decoding"
        " when they are few",
    )
    decode_threads: int = Field(
        0,
        ge=0,
        description="threads decoding and preprocessing uploads; 0: one per 8 usable cores (at least 1) where the"
        " model computes on the CPU, whose threads each decode thread preempts; 4 beside a GPU",
    )
    jpeg_draft: bool = Field(
        True,
        description="decode JPEGs of at least twice 256 px at 1/2, 1/4 or 1/8 scale (never under 256 px):"
        " much faster for phone photos, for a small pixel change (measured: docs/performance.md, section 2,"
        " benchmarks/results/decode_h100_host.md)",
    )

    # the index behind /similar (docs/scaling.md)
    vector_backend: Literal["faiss", "milvus"] = Field(
        "faiss", description="faiss: the version's gallery folder, in process; milvus: a Milvus collection"
    )
    milvus_uri: str = Field(
        "milvus.db", description="a milvus-lite folder (path ending in .db) or a Milvus server, http(s)://host:19530"
    )
    milvus_token: SecretStr | None = Field(None, description="Milvus credentials, user:password or an API key")
    milvus_collection: str | None = Field(
        None, description="collection name; default: model name and version, e.g. alexnet_caltech101_v1"
    )

    # limits
    max_upload_bytes: int = Field(8 * MIB, ge=1, description="largest accepted image file")
    max_request_bytes: int = Field(32 * MIB, ge=1, description="largest request body, all files and fields together")
    max_pixels: int = Field(40_000_000, ge=1, description="largest declared width x height, checked before decoding")
    max_files_per_request: int = Field(16, ge=1, description="most images in one /classify request")
    max_top_k: int = Field(20, ge=1, description="largest top_k of /classify")
    max_k: int = Field(50, ge=1, description="largest k of /similar")

    # batching and back-pressure
    batch_max_size: int = Field(64, ge=TEN_CROP, description="most crops per ONNX Runtime run (>= 10, one ten-crop)")
    batch_max_wait_ms: float = Field(
        0.0,
        ge=0,
        le=1000,
        description="extra wait for more requests before a batch runs (0: run as soon as the model is free;"
        " requests that arrive during a run form the next batch anyway)",
    )
    max_queue: int = Field(64, ge=1, description="most images in flight (decoding, queued or running); beyond: 503")
    retry_after_s: int = Field(1, ge=1, description="Retry-After of 503 answers")
    inference_timeout_s: float = Field(
        30.0, gt=0, description="longest an image may wait for and run in the model; beyond: 503 inference_timeout"
    )

    # access
    api_key: SecretStr | None = Field(
        None, description="X-API-Key for POST/DELETE /index and POST /admin/reload; unset: they are refused"
    )
    require_key_for_reads: bool = Field(
        False, description="require the X-API-Key on every route but /healthz, /readyz and /metrics too"
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="comma-separated origins allowed by CORS (empty: CORS off)"
    )

    @field_validator("model_name", "model_version", "milvus_uri")
    @classmethod
    def _matches_its_pattern(cls, value: str, info: ValidationInfo) -> str:
        pattern, message = _PATTERNS[str(info.field_name)]
        if not pattern.match(value):
            raise ValueError(message)
        return value

    @field_validator("milvus_token", "milvus_collection", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("milvus_collection")
    @classmethod
    def _milvus_collection(cls, value: str | None) -> str | None:
        if value is not None and not _COLLECTION_RE.match(value):
            raise ValueError("use letters, digits and '_', starting with a letter or '_' (at most 200)")
        return value

    @field_validator("api_key", mode="before")
    @classmethod
    def _api_key(cls, value: object) -> object:
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        if value is None or value == "":
            return None
        if not isinstance(value, str) or len(value) < MIN_API_KEY_LENGTH:
            raise ValueError(f"must be at least {MIN_API_KEY_LENGTH} characters")
        return value

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _cors_origins(cls, value: object) -> object:
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        for origin in value if isinstance(value, list) else []:
            if not isinstance(origin, str) or not _ORIGIN_RE.match(origin):
                raise ValueError(f"{origin!r} is not '*' or an http(s)://host[:port] origin")
        return value

    @model_validator(mode="after")
    def _limits_agree(self) -> Settings:
        if self.max_request_bytes < self.max_upload_bytes:
            raise ValueError("max_request_bytes must be >= max_upload_bytes")
        if self.require_key_for_reads and self.api_key is None:
            raise ValueError("require_key_for_reads needs an api_key")
        if self.max_queue < self.max_files_per_request:
            raise ValueError("max_queue must be >= max_files_per_request, or a full request could never be admitted")
        return self


def add_bind_args(parser: argparse.ArgumentParser) -> None:
    """``--host`` and ``--port`` (over ALEXNET_HOST and ALEXNET_PORT): ``python -m service``, ``alexnet serve``."""
    fields = Settings.model_fields
    parser.add_argument("--host", help=f"address to bind (env ALEXNET_HOST; default {fields['host'].default})")
    parser.add_argument("--port", type=int, help=f"port (env ALEXNET_PORT; default {fields['port'].default})")


def bind_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The flags of ``add_bind_args`` that were given, as Settings keyword arguments."""
    return {name: getattr(args, name) for name in ("host", "port") if getattr(args, name) is not None}


def settings_help() -> str:
    """Every setting: its variable, default and meaning (``python -m service --help``)."""
    lines = ["settings (environment variables):"]
    for name, field in Settings.model_fields.items():
        lines.append(f"  ALEXNET_{name.upper()} (default: {_shown(field.get_default(call_default_factory=True))})")
        lines += textwrap.wrap(field.description or "", 96, initial_indent=" " * 6, subsequent_indent=" " * 6)
    return "\n".join(lines)


def _shown(default: object) -> str:
    """A default as it would be written in the environment."""
    if default is None:
        return "unset"
    if isinstance(default, bool):
        return str(default).lower()
    if isinstance(default, list):
        return ",".join(default) or "empty"
    return str(default)


def get_settings() -> Settings:
    """The settings from the environment; ``create_app`` reads them once, when it makes the app."""
    return Settings()
