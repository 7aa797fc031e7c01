"""Real HTTP servers on loopback for the client tests.

``serve(app)`` runs any ASGI app under uvicorn in a thread on a free port and returns its URL.
``fake_service`` is a small Starlette app that speaks the service's HTTP API (the same routes,
fields, JSON shapes and error bodies) with made-up predictions, so the SDK and the CLI are tested
over real sockets before, and independently of, the real model. ``test_sdk_service.py`` runs the
same client against the real service.
"""

from __future__ import annotations

import io
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
import uvicorn
from PIL import Image, UnidentifiedImageError
from starlette.applications import Starlette
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

API_KEY = "test-key"
LABELS = ["airplane", "car", "cat", "dog", "face"]
MAX_UPLOAD_BYTES = 256 * 1024
MODEL_REF = {"name": "alexnet-test", "version": "v1"}


@contextmanager
def run_server(app: Any) -> Iterator[str]:
    """Serve ``app`` on 127.0.0.1 at a free port for the duration of the block."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", lifespan="off", timeout_graceful_shutdown=2)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
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


@pytest.fixture
def serve() -> Iterator[Callable[[Any], str]]:
    """``serve(app) -> base URL``; every server started is stopped after the test."""
    with ExitStack() as stack:
        yield lambda app: stack.enter_context(run_server(app))


def error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """The service's error body."""
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)


def encode_image(
    size: tuple[int, int] = (40, 30), color: tuple[int, int, int] = (200, 30, 30), fmt: str = "JPEG"
) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, fmt)
    return buffer.getvalue()


@dataclass
class Upload:
    field: str
    filename: str
    content_type: str
    content: bytes


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    form: dict[str, list[str]]
    uploads: list[Upload]


@dataclass
class FakeService:
    """The service's HTTP API with fake predictions: label = mean red level picks the class."""

    url: str = ""
    api_key: str = API_KEY
    labels: tuple[str, ...] = tuple(LABELS)
    ready: bool = True
    requests: list[Recorded] = field(default_factory=list)
    gallery: dict[int, tuple[str, str | None]] = field(default_factory=dict)
    next_id: int = 1

    async def _record(self, request: Request) -> tuple[dict[str, list[str]], list[Upload]]:
        form_data = await request.form() if request.method == "POST" else None
        form: dict[str, list[str]] = {}
        uploads: list[Upload] = []
        for key, value in form_data.multi_items() if form_data else ():
            if isinstance(value, UploadFile):
                uploads.append(Upload(key, value.filename or "", value.content_type or "", await value.read()))
            else:
                form.setdefault(key, []).append(value)
        self.requests.append(Recorded(request.method, request.url.path, dict(request.headers), form, uploads))
        return form, uploads

    @staticmethod
    def _predict(upload: Upload, top_k: int) -> tuple[list[dict[str, Any]], int, int] | JSONResponse:
        if len(upload.content) > MAX_UPLOAD_BYTES:
            return error(413, "payload_too_large", f"{upload.filename} is larger than {MAX_UPLOAD_BYTES} bytes")
        if not upload.content_type.startswith("image/") and upload.content_type != "application/octet-stream":
            return error(415, "unsupported_media_type", f"{upload.filename}: {upload.content_type} is not an image")
        try:
            image = Image.open(io.BytesIO(upload.content))
            image.load()
        except (UnidentifiedImageError, OSError) as exc:
            return error(400, "invalid_image", f"cannot decode {upload.filename}: {exc}")
        red = image.convert("RGB").getpixel((0, 0))[0]
        best = red * len(LABELS) // 256
        order = [best] + [i for i in range(len(LABELS)) if i != best]
        probabilities = [0.6] + [0.4 / (len(LABELS) - 1)] * (len(LABELS) - 1)
        predictions = [
            {"index": i, "label": LABELS[i], "probability": p} for i, p in zip(order, probabilities, strict=True)
        ][:top_k]
        return predictions, image.width, image.height

    def _check_key(self, request: Request) -> JSONResponse | None:
        key = request.headers.get("x-api-key")
        if key is None:
            return error(401, "missing_api_key", "this endpoint needs an X-API-Key header")
        if key != API_KEY:
            return error(403, "invalid_api_key", "the API key is not valid")
        return None

    @staticmethod
    def _int_field(form: dict[str, list[str]], name: str, default: int, low: int, high: int) -> int | JSONResponse:
        try:
            value = int(form.get(name, [str(default)])[0])
        except ValueError:
            return error(422, "invalid_parameter", f"{name} must be an integer")
        if not low <= value <= high:
            return error(422, "invalid_parameter", f"{name} must be between {low} and {high}")
        return value

    async def classify(self, request: Request) -> Response:
        form, uploads = await self._record(request)
        top_k = self._int_field(form, "top_k", 5, 1, len(LABELS))
        if isinstance(top_k, Response):
            return top_k
        tta = form.get("tta", ["ten_crop"])[0]
        if tta not in ("ten_crop", "center"):
            return error(422, "invalid_parameter", "tta must be ten_crop or center")
        if not uploads:
            return error(422, "invalid_parameter", "no files")
        results = []
        for upload in uploads:
            predicted = self._predict(upload, top_k)
            if isinstance(predicted, Response):
                return predicted
            predictions, width, height = predicted
            results.append({"filename": upload.filename, "predictions": predictions, "width": width, "height": height})
        return JSONResponse({"model": MODEL_REF, "tta": tta, "results": results, "elapsed_ms": 1.5})

    async def similar(self, request: Request) -> Response:
        form, uploads = await self._record(request)
        k = self._int_field(form, "k", 6, 1, 50)
        if isinstance(k, Response):
            return k
        if "id" in form:
            item_id = int(form["id"][0])
            if item_id not in self.gallery:
                return error(404, "not_found", f"no gallery item {item_id}")
            query = {"id": item_id, "filename": None, "label": self.gallery[item_id][0], "predictions": []}
        else:
            predicted = self._predict(uploads[0], 3)
            if isinstance(predicted, Response):
                return predicted
            query = {"id": None, "filename": uploads[0].filename, "label": None, "predictions": predicted[0]}
        neighbors = [
            {
                "id": item_id,
                "label": label,
                "distance": float(rank),
                "thumbnail_url": f"/gallery/{item_id}/thumbnail",
                "source": source,
            }
            for rank, (item_id, (label, source)) in enumerate(sorted(self.gallery.items())[:k])
        ]
        feature = form.get("feature", ["center"])[0]
        return JSONResponse(
            {"model": MODEL_REF, "feature": feature, "query": query, "neighbors": neighbors, "elapsed_ms": 0.7}
        )

    async def add(self, request: Request) -> Response:
        form, uploads = await self._record(request)
        if denied := self._check_key(request):
            return denied
        labels = form.get("labels", [])
        if len(labels) not in (1, len(uploads)):
            return error(422, "invalid_parameter", "give one label for all files or one per file")
        added = []
        for i, upload in enumerate(uploads):
            label = labels[0] if len(labels) == 1 else labels[i]
            self.gallery[self.next_id] = (label, upload.filename)
            added.append({"id": self.next_id, "label": label})
            self.next_id += 1
        return JSONResponse({"added": added})

    async def remove(self, request: Request) -> Response:
        await self._record(request)
        if denied := self._check_key(request):
            return denied
        item_id = int(request.path_params["item_id"])
        if self.gallery.pop(item_id, None) is None:
            return error(404, "not_found", f"no gallery item {item_id}")
        return JSONResponse({"deleted": item_id})

    async def healthz(self, request: Request) -> Response:
        await self._record(request)
        return JSONResponse({"status": "ok"})

    async def readyz(self, request: Request) -> Response:
        await self._record(request)
        if not self.ready:
            return JSONResponse({"status": "loading"}, status_code=503, headers={"Retry-After": "1"})
        return JSONResponse({"status": "ready", "model": MODEL_REF})

    async def models(self, request: Request) -> Response:
        await self._record(request)
        manifest = {
            "schema_version": 1,
            "name": MODEL_REF["name"],
            "version": MODEL_REF["version"],
            "created": "2024-01-01T00:00:00+00:00",
            "labels": LABELS,
            "feature_dim": 4096,
            "variant": "paper-grouped",
            "metrics": {"top1_ten_crop": 0.75, "per_class": {"cat": 0.8}},
            "preprocessing": {"resize": 256, "crop": 224},
        }
        return JSONResponse({**manifest, "provider": "CPUExecutionProvider", "gallery_size": len(self.gallery)})

    async def thumbnail(self, request: Request) -> Response:
        await self._record(request)
        item_id = int(request.path_params["item_id"])
        if item_id not in self.gallery:
            return error(404, "not_found", f"no gallery item {item_id}")
        return Response(encode_image((16, 16)), media_type="image/jpeg")

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/classify", self.classify, methods=["POST"]),
                Route("/similar", self.similar, methods=["POST"]),
                Route("/index", self.add, methods=["POST"]),
                Route("/index/{item_id:int}", self.remove, methods=["DELETE"]),
                Route("/healthz", self.healthz),
                Route("/readyz", self.readyz),
                Route("/v1/models", self.models),
                Route("/gallery/{item_id:int}/thumbnail", self.thumbnail),
            ]
        )


@pytest.fixture
def fake_service(serve: Callable[[Any], str]) -> FakeService:
    """A running fake service with three gallery items (ids 1-3)."""
    service = FakeService()
    for label in ("cat", "dog", "car"):
        service.gallery[service.next_id] = (label, f"{label}.jpg")
        service.next_id += 1
    service.url = serve(service.app())
    return service


@pytest.fixture
def make_image() -> Callable[..., bytes]:
    """``make_image(size=(40, 30), color=(200, 30, 30), fmt="JPEG") -> encoded bytes``."""
    return encode_image


@pytest.fixture(autouse=True)
def _no_client_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests say where the client connects; the developer's environment must not."""
    monkeypatch.delenv("ALEXNET_API_URL", raising=False)
    monkeypatch.delenv("ALEXNET_API_KEY", raising=False)
