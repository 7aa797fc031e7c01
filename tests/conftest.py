"""Shared fixtures: a small published model with a gallery, and the real service on loopback.

``publish_tiny_model`` publishes an AlexNet for a handful of Caltech-101 classes into a store (its
weights are untrained for now: swap in a few real training steps once training/train.py offers a
function for it). ``tiny_model`` publishes one per test session and indexes a small gallery with
training/index.py; ``start_server`` runs ``python -m service`` on a store (a real uvicorn process
on a free loopback port): ``live_service`` is one shared by the session, ``start_service`` starts
a test's own (e.g. on ``private_store``, a copy it may change).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest

from model_store.manifest import MEAN_FILE, MODEL_FILE, Manifest, PreprocessingSpec
from model_store.preprocessing import Preprocessor, decode_image, resize_center_crop
from model_store.store import publish_version
from training.index import build_gallery_index, gallery_images

REPO_ROOT = Path(__file__).resolve().parents[1]
from image_helpers import CALTECH_ROOT  # noqa: E402 - tests/ is on sys.path under pytest
TINY_MODEL_NAME = "alexnet-tiny"
TINY_CLASSES = ("Faces", "Leopards", "Motorbikes", "airplanes", "watch")
GALLERY_PER_CLASS = 4
TEST_API_KEY = "test-api-key-0123456789"


def split_images(data_root: Path, split: str, classes: Sequence[str], per_class: int) -> list[Path]:
    """The first ``per_class`` images of each of ``classes`` in ``splits/<split>.txt``."""
    return [path for _, path in gallery_images(data_root, split, classes, per_class)]


def channel_mean(paths: Sequence[Path], resize: int = 256) -> np.ndarray:
    """Per-channel mean (float32 [3]) of the images as preprocessing sees them before the crop."""
    squares = [resize_center_crop(decode_image(p), resize).astype(np.float64) for p in paths]
    return np.mean([s.reshape(-1, 3).mean(axis=0) for s in squares], axis=0).astype(np.float32)


def publish_tiny_model(
    store_root: Path,
    data_root: Path,
    classes: Sequence[str],
    *,
    name: str = TINY_MODEL_NAME,
    images_per_class: int = 4,
    seed: int = 0,
) -> Path:
    """Publish an AlexNet (grouped, as in the paper) for ``classes`` with a per-channel mean taken
    from their training images; returns the version folder.

    The weights are untrained: PyTorch's default layer initialisation with a fixed seed, which
    (unlike the paper's N(0, 0.01)) gives clearly different outputs for different images.
    """
    import torch

    from training.export import check_parity, export_onnx
    from training.model import build_alexnet

    torch.manual_seed(seed)
    model = build_alexnet(num_classes=len(classes))
    for layer in model.modules():
        if isinstance(layer, torch.nn.Conv2d | torch.nn.Linear):
            layer.reset_parameters()
    mean = channel_mean(split_images(data_root, "train30", classes, images_per_class))
    probe = Preprocessor(mean=mean)
    crops = np.concatenate([probe.crops(p, "center") for p in split_images(data_root, "test30", classes[:2], 1)])
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = export_onnx(model, Path(tmp) / MODEL_FILE)
        check_parity(model, onnx_path, crops)  # as the real pipeline does before publishing
        mean_path = Path(tmp) / MEAN_FILE
        np.save(mean_path, mean)
        manifest = Manifest(
            name=name,
            labels=list(classes),
            variant=model.variant,
            preprocessing=PreprocessingSpec(mean_kind="channel"),
            recipe={"training": "none (test fixture: untrained weights)", "seed": seed},
        )
        return publish_version(store_root, manifest, {MODEL_FILE: onnx_path, MEAN_FILE: mean_path})


def clone_store(source: Path, target: Path) -> Path:
    """A copy of a store made of hard links (instant, no extra space). Safe for the gallery, which
    only ever writes new files and renames them into place; a test that corrupts a file must
    replace that file with a real copy first."""
    shutil.copytree(source, target, copy_function=os.link)
    return target


@dataclass(frozen=True)
class TinyModel:
    store_root: Path
    name: str
    version_dir: Path
    data_root: Path
    classes: tuple[str, ...]


@pytest.fixture(scope="session")
def caltech_root() -> Path:
    if not (CALTECH_ROOT / "splits" / "train30.txt").is_file():
        pytest.skip(f"Caltech-101 is not at {CALTECH_ROOT} (set ALEXNET_DATA)")
    return CALTECH_ROOT


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory, caltech_root: Path) -> TinyModel:
    """One published model per session, with a gallery of 4 training images of each class."""
    store_root = tmp_path_factory.mktemp("store")
    version_dir = publish_tiny_model(store_root, caltech_root, TINY_CLASSES)
    build_gallery_index(
        store_root, TINY_MODEL_NAME, "latest", caltech_root, classes=TINY_CLASSES, per_class=GALLERY_PER_CLASS
    )
    return TinyModel(store_root, TINY_MODEL_NAME, version_dir, caltech_root, TINY_CLASSES)


# --- the real service on loopback ---------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class LiveServer:
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> int:
        """Graceful stop (SIGTERM); returns the exit status (-15: uvicorn re-raises the signal
        once it has shut down)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(30)

    def kill(self) -> None:
        """kill -9: no shutdown code runs."""
        self.process.kill()
        self.process.wait(30)


def server_env(store_root: Path, model_name: str, port: int, **settings: object) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALEXNET_")}
    env |= {"ALEXNET_STORE_ROOT": str(store_root), "ALEXNET_MODEL_NAME": model_name}
    env |= {"ALEXNET_HOST": "127.0.0.1", "ALEXNET_PORT": str(port), "ALEXNET_ACCESS_LOG": "false"}
    env |= {f"ALEXNET_{key.upper()}": str(value) for key, value in settings.items()}
    return env


def start_server(
    store_root: Path, model_name: str, log_path: Path, timeout: float = 120, **settings: object
) -> LiveServer:
    """Run ``python -m service`` with ``ALEXNET_*`` settings; return once /readyz answers 200.
    Raises RuntimeError (with the server's log) if it exits or is not ready in ``timeout``."""
    port = free_port()
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "service"],
            cwd=REPO_ROOT,
            env=server_env(store_root, model_name, port, **settings),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    server = LiveServer(f"http://127.0.0.1:{port}", process, log_path)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the service exited with {process.returncode}:\n{server.log()[-4000:]}")
        try:
            if httpx.get(f"{server.url}/readyz", timeout=2).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    server.kill()
    raise RuntimeError(f"the service was not ready in {timeout}s:\n{server.log()[-4000:]}")


@dataclass(frozen=True)
class LiveService:
    url: str
    api_key: str
    model: TinyModel
    server: LiveServer


# Settings of the shared server: limits small enough to test cheaply, a batching window wide
# enough that one request's files reliably share a batch.
LIVE_SETTINGS = {
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


@pytest.fixture
def start_service(tmp_path: Path) -> Iterator[Callable[..., LiveServer]]:
    """``start_service(store_root, **settings) -> LiveServer`` for the tiny model; the servers
    still running at the end of the test are stopped."""
    started: list[LiveServer] = []

    def start(store_root: Path, model_name: str = TINY_MODEL_NAME, **settings: object) -> LiveServer:
        log_path = tmp_path / f"server-{len(started)}.log"
        started.append(start_server(store_root, model_name, log_path, **settings))
        return started[-1]

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def private_store(tiny_model: TinyModel, tmp_path: Path) -> Path:
    """A copy of the tiny model's store that a test may change (hard links: see ``clone_store``)."""
    return clone_store(tiny_model.store_root, tmp_path / "store")


@pytest.fixture(scope="session")
def live_service(tiny_model: TinyModel, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveService]:
    """The service on a hard-linked copy of the tiny model's store (tests may add and remove
    gallery items; they must not assume the gallery's exact size)."""
    work = tmp_path_factory.mktemp("live")
    store = clone_store(tiny_model.store_root, work / "store")
    model = TinyModel(store, tiny_model.name, store / tiny_model.name / tiny_model.version_dir.name,
                      tiny_model.data_root, tiny_model.classes)  # fmt: skip
    server = start_server(store, tiny_model.name, work / "server.log", **LIVE_SETTINGS)
    try:
        yield LiveService(server.url, TEST_API_KEY, model, server)
    finally:
        server.stop()
