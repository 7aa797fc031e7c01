"""Shared fixtures: a small published model with a gallery, and the real service on loopback.

``publish_tiny_model`` trains an AlexNet for a few real steps on a handful of Caltech-101 classes
and publishes it with the real pipeline. ``tiny_model`` publishes one per test session and
indexes a small gallery with training/index.py; ``start_server`` runs ``python -m service`` on a
store (a real uvicorn process on a free loopback port): ``live_service`` is one shared by the
session, ``start_service`` starts a test's own (e.g. on ``private_store``, a copy it may change).

Route behaviour (status codes, error bodies, parameters, limits, the SDK and the CLI) is tested on
the fast service instead: the real app on a fake model, in process (tests/fake_serving.py;
``fake_store``, ``fast``, ``start_fast``), in milliseconds and without the dataset.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from fake_serving import LIVE_SETTINGS, TEST_API_KEY, FastService, build_fake_store, fast_service
from image_helpers import CALTECH_ROOT  # tests/ is on sys.path under pytest
from training_helpers import small_config

from model_store.writer_lock import LOCK_FILE
from training.index import build_gallery_index

REPO_ROOT = Path(__file__).resolve().parents[1]

TINY_MODEL_NAME = "alexnet-tiny"
# the first five classes of classes.txt: what TrainConfig(classes=5) trains on
TINY_CLASSES = ("Faces", "Faces_easy", "Leopards", "Motorbikes", "accordion")
GALLERY_PER_CLASS = 4


def publish_tiny_model(
    store_root: Path,
    data_root: Path,
    classes: int = len(TINY_CLASSES),
    *,
    name: str = TINY_MODEL_NAME,
    steps: int = 3,
    seed: int = 0,
) -> Path:
    """Train the tests' AlexNet (``small_config``: grouped, at ``TEST_WIDTH``) for a few real steps on the first
    ``classes`` Caltech-101 classes and publish it with the real pipeline (export, parity check, publish),
    skipping the test-split evaluation; returns the version folder.

    The run uses the deviations of the project's CPU run (He init, inputs scaled by 1/64), so its
    outputs differ clearly from image to image after a few steps.
    """
    from training.pipeline import publish_run
    from training.train import train

    work = Path(tempfile.mkdtemp(prefix="tiny-run-"))
    try:
        cfg = small_config(
            work,
            data=str(data_root),
            classes=classes,
            max_steps_per_epoch=steps,
            val_fraction=0.1,
            init="kaiming",
            input_scale=1 / 64,
            warmup_epochs=0.5,
            seed=seed,
        )
        return publish_run(train(cfg), store_root, name, evaluate_test=False, index=False)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def clone_store(source: Path, target: Path) -> Path:
    """A copy of a store made of hard links (instant, no extra space). Safe for the gallery, which
    only ever writes new files and renames them into place; a test that corrupts a file must
    replace that file with a real copy first. A gallery's writer.lock is copied: a shared inode
    would share the lock between the stores."""

    def link(src: str, dst: str) -> None:
        if Path(src).name == LOCK_FILE:
            shutil.copyfile(src, dst)
        else:
            os.link(src, dst)

    shutil.copytree(source, target, copy_function=link)
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


def run_temp_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The temporary folder of this whole run: shared by pytest-xdist's workers (each has its own below it)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


@contextmanager
def exclusive(lock_path: Path) -> Iterator[None]:
    """An exclusive lock between processes (``flock`` on ``lock_path``)."""
    with open(lock_path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory, caltech_root: Path) -> TinyModel:
    """One published model per run, with a gallery of 4 training images of each class: the first worker
    to ask publishes it (the others wait on a lock), and every worker uses that store. Tests never change
    it: they change copies (``private_store``, ``live_service``)."""
    root = run_temp_root(tmp_path_factory)
    store_root, done = root / "tiny-store", root / "tiny-store.done"
    with exclusive(root / "tiny-store.lock"):
        if not done.exists():
            shutil.rmtree(store_root, ignore_errors=True)
            version_dir = publish_tiny_model(store_root, caltech_root, len(TINY_CLASSES))
            build_gallery_index(
                store_root, TINY_MODEL_NAME, "latest", caltech_root, classes=TINY_CLASSES, per_class=GALLERY_PER_CLASS
            )
            done.write_text(version_dir.name)
    version_dir = store_root / TINY_MODEL_NAME / done.read_text()
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


# Test servers run the fp32 model on ONNX Runtime whatever the CPU (a test that wants `auto` or another runtime says
# so), and their ONNX Runtime threads do not spin between runs: the suite's workers share the cores.
TEST_SERVER_DEFAULTS = {"ALEXNET_RUNTIME": "onnxruntime", "ALEXNET_INTRA_OP_SPINNING": "false"}


def server_env(store_root: Path, model_name: str, port: int, **settings: object) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALEXNET_")} | TEST_SERVER_DEFAULTS
    env |= {"ALEXNET_STORE_ROOT": str(store_root), "ALEXNET_MODEL_NAME": model_name}
    env |= {"ALEXNET_HOST": "127.0.0.1", "ALEXNET_PORT": str(port), "ALEXNET_ACCESS_LOG": "false"}
    env |= {f"ALEXNET_{key.upper()}": str(value) for key, value in settings.items()}
    return env


def start_server(
    store_root: Path,
    model_name: str,
    log_path: Path,
    timeout: float = 120,
    module: str = "service",
    port_flag: bool = False,
    **settings: object,
) -> LiveServer:
    """Run ``python -m service`` (or ``module``, e.g. "alexnet_cli serve") with ``ALEXNET_*``
    settings; return once /readyz answers 200. ``port_flag``: give the port as ``--port``, with
    another one in ALEXNET_PORT. Raises RuntimeError (with the server's log) if it exits or is not
    ready in ``timeout``."""
    port = free_port()
    command, env = [sys.executable, "-m", *module.split()], server_env(store_root, model_name, port, **settings)
    if port_flag:
        command.append(f"--port={port}")
        env["ALEXNET_PORT"] = str(port - 1)  # not the one readiness is polled on
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            command,
            cwd=REPO_ROOT,
            env=env,
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


# --- the fast service: the real app on a fake model, in process ---------------------------------


@pytest.fixture(scope="session")
def fake_store_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("fake-store")
    build_fake_store(root)
    return root


@pytest.fixture
def fake_store(fake_store_template: Path, tmp_path: Path) -> Path:
    """A test's own copy of the fake model's store (tests/fake_serving.py: ten gallery items)."""
    return Path(shutil.copytree(fake_store_template, tmp_path / "fake-store"))


@pytest.fixture
def start_fast(fake_store: Path) -> Iterator[Callable[..., FastService]]:
    """``start_fast(**settings) -> FastService``: the app on the fake model over this test's
    ``fake_store``, started in process (``LIVE_SETTINGS`` unless given); stopped after the test."""
    with ExitStack() as stack:
        yield lambda **settings: stack.enter_context(fast_service(fake_store, **(settings or LIVE_SETTINGS)))


@pytest.fixture
def fast(start_fast: Callable[..., FastService]) -> FastService:
    """The fast service with ``LIVE_SETTINGS`` (the live service's limits and key)."""
    return start_fast()
