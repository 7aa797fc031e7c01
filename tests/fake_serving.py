"""The real service app on a fake model: every route, middleware, upload check, preprocessing step,
the engine (admission, decode threads, dynamic batcher, timeout) and a real FAISS gallery, with
only the ONNX Runtime session replaced by ``FakeModel``, a few numpy lines whose outputs follow the
pixels. Starts in milliseconds and needs no dataset and no trained model.

- ``build_fake_store(root)`` publishes a version (a placeholder ``model.onnx``, a per-channel mean)
  with the real store code and indexes ``GALLERY`` (synthetic pictures) into its gallery.
- ``FakeServing`` is the ``open_serving`` given to ``service.app.create_app``: what the lifespan
  opens instead of ``service.serving.open_version`` (the same steps with ``FakeModel``).
- ``fake_app(store_root, **settings)`` builds the app; ``run_server(app)`` serves any ASGI app on
  loopback (uvicorn in a thread) where a test needs a real socket (the CLI, raw paths).

Anything about what a *trained* model computes (parity with the offline evaluation, int8, OpenVINO)
stays on the real tiny model (tests/conftest.py ``tiny_model``).
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
import warnings
from collections.abc import Coroutine, Iterator
from contextlib import AsyncExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import numpy as np
import uvicorn
from fastapi import FastAPI
from PIL import Image

with warnings.catch_warnings():  # Starlette 1.x would rather have httpx2 under its TestClient
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from image_helpers import encode

from model_store.gallery import Gallery, make_thumbnail
from model_store.manifest import MEAN_FILE, MODEL_FILE, Manifest, PreprocessingSpec
from model_store.preprocessing import decode_image
from model_store.store import ModelVersion, load_version, publish_version
from service import serving
from service.app import create_app
from service.engine import Engine
from service.metrics import Metrics
from service.retrieval import Retrieval
from service.settings import Settings

T = TypeVar("T")
FAKE_MODEL_NAME = "alexnet-fake"
FAKE_LABELS = ("airplane", "car", "cat", "dog", "face")
FAKE_PROVIDER = "FakeExecutionProvider"
CHANNEL_MEAN = np.array([120.0, 115.0, 100.0], np.float32)
TEST_API_KEY = "test-api-key-0123456789"

# Settings of the shared servers (fake and real): limits small enough to test cheaply, a batching
# window wide enough that one request's files reliably share a batch.
LIVE_SETTINGS: dict[str, Any] = {
    "api_key": TEST_API_KEY,
    "max_upload_bytes": 1024 * 1024,
    "max_request_bytes": 3 * 1024 * 1024,
    "max_pixels": 20_000_000,
    "max_files_per_request": 4,
    "max_top_k": 5,
    "max_k": 10,
    "batch_max_wait_ms": 50,
    "max_queue": 32,
}


def picture(width: int, height: int, seed: int) -> Image.Image:
    """A textured RGB image (gradients and stripes), different for each seed."""
    image = Image.linear_gradient("L").resize((width, height)).convert("RGB")
    stripes = Image.new("RGB", (width, height), ((seed * 70) % 256, (seed * 130) % 256, (seed * 40) % 256))
    for x in range(0, width, 8 + seed):
        stripes.paste((255 - seed * 20 % 256, 40, 90), (x, 0, x + 3, height))
    return Image.blend(image, stripes, 0.5)


@dataclass(frozen=True)
class GalleryPicture:
    label: str
    source: str
    seed: int
    size: tuple[int, int]

    def png(self) -> bytes:
        """Lossless: the same bytes uploaded give the stored vector exactly."""
        return encode(picture(*self.size, self.seed), "PNG")


# two pictures of each label (ids 0..9 in this order)
GALLERY = tuple(
    GalleryPicture(label, f"images/{label}/image_{n:04d}.png", seed=2 * i + n, size=(160 + 16 * n, 120))
    for i, label in enumerate(FAKE_LABELS)
    for n in range(2)
)


class FakeModel:
    """Stands in for the runtime's model (``service.runtime.Model``: ``run``, ``provider``,
    ``threads``, ``precision``): crops [N,3,H,W] -> (logits [N,C], fc7-like features [N,feature_dim] >= 0),
    fixed random projections of each crop's 8x8 average-pooled pixels. Deterministic, row by row
    (a crop's outputs do not depend on its batch), and different for different pixels.

    ``gate``: while cleared, every run waits for it (up to ``gate_timeout_s``): to hold inference
    for back-pressure and timeout tests. ``batches``: the size of every run."""

    provider = FAKE_PROVIDER
    runtime = "fake"
    threads = 1

    def __init__(self, num_classes: int, feature_dim: int, precision: str = "fp32", seed: int = 0):
        rng = np.random.default_rng(seed)
        self.precision = precision
        self.projection = (rng.standard_normal((3 * 8 * 8, feature_dim)) / 8).astype(np.float32)
        self.classifier = (rng.standard_normal((feature_dim, num_classes)) / feature_dim).astype(np.float32)
        self.gate = threading.Event()
        self.gate.set()
        self.gate_timeout_s = 10.0
        self.batches: list[int] = []

    def run(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if not self.gate.is_set():
            self.gate.wait(self.gate_timeout_s)
        self.batches.append(len(crops))
        n, channels, height, width = crops.shape
        pooled = crops.reshape(n, channels, 8, height // 8, 8, width // 8).mean(axis=(3, 5)).reshape(n, -1)
        # row by row: one BLAS call per crop, whatever the batch (a batched product may round differently)
        features = np.stack([np.maximum(row @ self.projection, 0) for row in pooled]).astype(np.float32)
        return np.stack([row @ self.classifier for row in features]).astype(np.float32), features


def publish_fake_version(store_root: Path, name: str = FAKE_MODEL_NAME, labels: tuple[str, ...] = FAKE_LABELS) -> Path:
    """A version published with the real store code; its ``model.onnx`` is a placeholder that only
    ``FakeServing`` serves (the real service refuses it at start-up)."""
    work = store_root / f".fake-{name}"
    work.mkdir(parents=True, exist_ok=True)
    (work / MODEL_FILE).write_bytes(b"not an ONNX model: tests/fake_serving.py FakeModel stands in for it\n")
    np.save(work / MEAN_FILE, CHANNEL_MEAN)
    manifest = Manifest(
        name=name,
        labels=list(labels),
        variant="fake",
        preprocessing=PreprocessingSpec(mean_kind="channel"),
        recipe={"fake": "tests/fake_serving.py"},
        metrics={"test_split": "test30", "steps": 3, "onnx_parity": {"max_abs_diff": 0.0}},
    )
    return publish_version(store_root, manifest, {MODEL_FILE: work / MODEL_FILE, MEAN_FILE: work / MEAN_FILE})


def center_features(model: FakeModel, version: ModelVersion, data: bytes) -> np.ndarray:
    """The centre-crop feature vector of an image, as the service stores and queries it."""
    return model.run(version.preprocessor().crops(data, "center"))[1][0]


def build_fake_store(store_root: Path, name: str = FAKE_MODEL_NAME) -> Path:
    """Publish the fake version and index ``GALLERY`` into its gallery; returns the version folder."""
    version_dir = publish_fake_version(store_root, name)
    version = load_version(store_root, name)
    model = model_for(version)
    images = [item.png() for item in GALLERY]
    gallery = Gallery.open(version.index_dir, version.manifest.feature_dim)
    gallery.add(
        np.stack([center_features(model, version, data) for data in images]),
        labels=[item.label for item in GALLERY],
        sources=[item.source for item in GALLERY],
        thumbnails=[make_thumbnail(decode_image(data)) for data in images],
    )
    return version_dir


def model_for(version: ModelVersion, precision: str = "fp32") -> FakeModel:
    """The fake model of a version ("auto" precision: fp32)."""
    return FakeModel(
        len(version.manifest.labels), version.manifest.feature_dim, "fp32" if precision == "auto" else precision
    )


class FakeServing:
    """``open_serving`` for ``create_app``: ``serving.open_version`` with ``FakeModel`` in place of
    the ONNX Runtime session. The last engine and model opened are kept for the test to look at."""

    def __init__(self) -> None:
        self.engine: Engine | None = None
        self.model: FakeModel | None = None

    async def __call__(self, settings: Settings, metrics: Metrics) -> tuple[Engine, Retrieval]:
        version = load_version(settings.store_root, settings.model_name, settings.model_version)
        model = model_for(version, settings.model_precision)
        engine = Engine(version, model, settings, metrics)
        try:
            retrieval = serving.load_retrieval(version, settings)  # the gallery as the real service opens it
            await engine.start()
        except BaseException:
            await engine.close()
            raise
        self.engine, self.model = engine, model
        return engine, retrieval


def fake_settings(store_root: Path, **settings: Any) -> Settings:
    return Settings(_env_file=None, store_root=store_root, model_name=FAKE_MODEL_NAME, **settings)  # type: ignore[call-arg]


def fake_app(store_root: Path, serving: FakeServing | None = None, **settings: Any) -> FastAPI:
    """The service app on ``FakeModel`` over ``store_root`` (made by ``build_fake_store``)."""
    return create_app(fake_settings(store_root, **settings), open_serving=serving or FakeServing())


@dataclass
class FastService:
    """The app on ``FakeModel``, started (lifespan run) with ``client``, a ``TestClient`` (an
    ``httpx.Client`` calling the app in process; server errors come back as answers, as over HTTP)."""

    app: FastAPI
    serving: FakeServing
    store_root: Path
    client: TestClient
    api_key: str | None

    @property
    def model(self) -> FakeModel:
        assert self.serving.model is not None, "not started"
        return self.serving.model

    @property
    def version(self) -> ModelVersion:
        return load_version(self.store_root, FAKE_MODEL_NAME)


@contextmanager
def fast_service(store_root: Path, **settings: Any) -> Iterator[FastService]:
    """``fake_app`` started in process for the duration of the block."""
    serving = FakeServing()
    app = fake_app(store_root, serving, **settings)
    key = settings.get("api_key")
    with TestClient(app, raise_server_exceptions=False) as client:
        yield FastService(app, serving, store_root, client, key)


class AsyncFastService:
    """``fake_app`` started in the loop of an ``asyncio.Runner`` and called in process through
    ``httpx.ASGITransport`` (``http``): for ``AsyncClient`` (the app's engine lives in one loop, so
    every call of the test runs in this one, ``run(coroutine)``). ``close()`` stops it."""

    def __init__(self, store_root: Path, **settings: Any) -> None:
        self.serving = FakeServing()
        self.app = fake_app(store_root, self.serving, **settings)
        self.runner = asyncio.Runner()
        self._stack = AsyncExitStack()
        self.run(self._stack.enter_async_context(self.app.router.lifespan_context(self.app)))
        transport = httpx.ASGITransport(app=self.app, raise_app_exceptions=False)
        self.http = httpx.AsyncClient(transport=transport, base_url="http://testserver")

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return self.runner.run(coroutine)

    def close(self) -> None:
        self.run(self.http.aclose())
        self.run(self._stack.aclose())
        self.runner.close()


@contextmanager
def run_server(app: Any, lifespan: str = "on") -> Iterator[str]:
    """Serve ``app`` on 127.0.0.1 at a free port (uvicorn in a thread) for the duration of the block."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", lifespan=lifespan, timeout_graceful_shutdown=2)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
