"""The model side of the service: an ONNX Runtime session, preprocessing off the event loop, the
dynamic batcher in front of the session, and admission control (``max_queue`` images in flight).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import onnxruntime as ort

from model_store.gallery import make_thumbnail
from model_store.manifest import Manifest
from model_store.preprocessing import ImageError, Preprocessor, Tta, decode_image, full_size, resize_center_crop
from model_store.store import ModelVersion, load_version
from service.batching import BatcherClosed, DynamicBatcher
from service.errors import InferenceTimeout, NotReady, Overloaded
from service.metrics import Metrics
from service.openvino_model import OpenVinoModel
from service.parallelism import Parallelism, plan_decode_threads, plan_parallelism
from service.settings import TEN_CROP, Settings
from service.uploads import Upload

log = logging.getLogger(__name__)
CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"


class EngineError(RuntimeError):
    """The model cannot be served as configured (raised at start-up)."""


def choose_providers(preference: str, available: Sequence[str]) -> list[str]:
    """ONNX Runtime providers in order of preference: CUDA first when allowed and present."""
    if preference == "cpu":
        return [CPU]
    if CUDA in available:
        return [CUDA, CPU]
    if preference == "cuda":
        raise EngineError(f"providers=cuda, but this ONNX Runtime offers only {list(available)}")
    return [CPU]


def session_providers(
    preference: str, available: Sequence[str], cuda_conv_algo_search: str = "heuristic"
) -> list[str | tuple[str, dict[str, str]]]:
    """``choose_providers`` with the CUDA provider's options: how cuDNN picks its convolution kernels
    (the service's batches take many shapes, and an exhaustive search stalls on each new one)."""
    chosen = choose_providers(preference, available)
    options = {"cudnn_conv_algo_search": cuda_conv_algo_search.upper()}
    return [(CUDA, options) if name == CUDA else name for name in chosen]


class OnnxModel:
    """One ONNX Runtime session: crops [N,3,H,W] -> (logits [N,C], fc7 features [N,4096])."""

    def __init__(
        self,
        version: ModelVersion,
        preference: str = "auto",
        intra_op_threads: int = 0,
        spinning: bool = True,
        precision: str = "fp32",
        cuda_conv_algo_search: str = "heuristic",
    ):
        options = ort.SessionOptions()
        options.intra_op_num_threads = intra_op_threads
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        providers = session_providers(preference, ort.get_available_providers(), cuda_conv_algo_search)
        path = version.model_file(precision)
        self.session = ort.InferenceSession(str(path), sess_options=options, providers=providers)
        self.threads = intra_op_threads  # per run (0: ONNX Runtime's default)
        self.provider = self.session.get_providers()[0]
        self.precision = precision
        if preference == "cuda" and self.provider != CUDA:
            raise EngineError(f"providers=cuda, but ONNX Runtime fell back to {self.provider}")
        self.signature = version.manifest.onnx
        self._outputs = [self.signature.logits, self.signature.features]

    def run(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        logits, features = self.session.run(self._outputs, {self.signature.input: crops})
        return logits, features


@dataclass(frozen=True)
class PreparedImage:
    crops: np.ndarray  # float32 [10 or 1, 3, crop, crop]
    width: int  # of the decoded, upright image
    height: int
    thumbnail: bytes | None


@dataclass(frozen=True)
class ImageOutputs:
    logits: np.ndarray  # [crops, C]
    features: np.ndarray  # [crops, 4096]


class Engine:
    def __init__(self, version: ModelVersion, model: OnnxModel | OpenVinoModel, settings: Settings, metrics: Metrics):
        self.version = version
        self.model = model
        self.preprocessor: Preprocessor = dataclasses.replace(
            version.preprocessor(max_pixels=settings.max_pixels), jpeg_draft=settings.jpeg_draft
        )
        self.max_queue = settings.max_queue
        self.retry_after_s = settings.retry_after_s
        self.inference_timeout_s = settings.inference_timeout_s
        self.metrics = metrics
        self.in_flight = 0
        self.ready = False
        self.decode_threads = plan_decode_threads(settings, model_on_cpu=model.provider != CUDA)
        self._decoders = ThreadPoolExecutor(max_workers=self.decode_threads, thread_name_prefix="decode")
        self.parallelism = Parallelism(settings.inference_workers, model.threads)  # as the model was built
        self.batcher = DynamicBatcher(
            model.run,
            settings.batch_max_size,
            settings.batch_max_wait_ms / 1000,
            on_batch=metrics.observe_batch,
            workers=self.parallelism.workers,
        )

    @property
    def manifest(self) -> Manifest:
        return self.version.manifest

    @property
    def provider(self) -> str:
        return self.model.provider

    async def start(self) -> None:
        """Start the batcher and run one ten-crop batch so the first request pays no warm-up
        (which may take longer than inference_timeout_s)."""
        self.batcher.start()
        crop = self.preprocessor.crop
        await self.batcher.submit(np.zeros((TEN_CROP, 3, crop, crop), np.float32))
        self.ready = True
        log.info(
            "model %s/%s ready on %s (%d inference workers, %s threads per run, %d decode threads)",
            self.manifest.name,
            self.manifest.version,
            self.provider,
            self.parallelism.workers,
            self.parallelism.threads or "runtime-chosen",
            self.decode_threads,
        )

    async def close(self) -> None:
        self.ready = False
        await self.batcher.close()
        self._decoders.shutdown(wait=False, cancel_futures=True)

    @contextmanager
    def admit(self, images: int) -> Iterator[None]:
        """Hold ``images`` of the ``max_queue`` in-flight slots, or refuse with 503 at once."""
        if not self.ready:
            raise NotReady("the model is not loaded", {"Retry-After": str(self.retry_after_s)})
        if self.in_flight + images > self.max_queue:
            self.metrics.rejected.inc()
            raise Overloaded(
                f"{self.in_flight} images in flight, the limit is {self.max_queue}; retry later",
                {"Retry-After": str(self.retry_after_s)},
            )
        self.in_flight += images
        try:
            yield
        finally:
            self.in_flight -= images

    def _prepare(self, data: bytes, tta: Tta, thumbnail: bool) -> PreparedImage:
        pre = self.preprocessor
        image = decode_image(data, pre.max_pixels, pre.resize if pre.jpeg_draft else 0)
        # Preprocessor.crops(data, tta), keeping the decoded image for its size and thumbnail
        crops = self.preprocessor.crops_from_square(resize_center_crop(image, self.preprocessor.resize), tta)
        width, height = full_size(image)
        return PreparedImage(crops, width, height, make_thumbnail(image) if thumbnail else None)

    async def prepare(self, data: bytes, tta: Tta, thumbnail: bool = False) -> PreparedImage:
        """Decode and crop on the decode threads (raises ImageError for bad bytes)."""
        return await asyncio.get_running_loop().run_in_executor(self._decoders, self._prepare, data, tta, thumbnail)

    async def prepare_uploads(
        self, uploads: Sequence[Upload], tta: Tta, thumbnail: bool = False
    ) -> list[PreparedImage]:
        """All uploads prepared concurrently; the first bad one is reported by its file name (after
        all have finished, so admission is not released while decoding goes on)."""
        results = await asyncio.gather(*(self.prepare(u.data, tta, thumbnail) for u in uploads), return_exceptions=True)
        prepared = []
        for upload, result in zip(uploads, results, strict=True):
            if isinstance(result, ImageError):
                raise type(result)(f"{upload.filename}: {result}") from result
            if isinstance(result, BaseException):
                raise result
            prepared.append(result)
        return prepared

    async def infer_all(self, prepared: Sequence[PreparedImage]) -> list[ImageOutputs]:
        return list(await asyncio.gather(*(self.infer(p.crops) for p in prepared)))

    async def infer(self, crops: np.ndarray) -> ImageOutputs:
        """The model's outputs for one image's crops, or 503 when they take longer than
        inference_timeout_s (waiting included): the job is then dropped from the batcher's queue, or,
        already running, finishes unread."""
        try:
            logits, features = await asyncio.wait_for(self.batcher.submit(crops), self.inference_timeout_s)
        except BatcherClosed as exc:
            raise NotReady(str(exc), {"Retry-After": str(self.retry_after_s)}) from exc
        except TimeoutError as exc:
            self.metrics.inference_timeouts.inc()
            raise InferenceTimeout(
                f"inference took longer than inference_timeout_s = {self.inference_timeout_s:g} s; retry later",
                {"Retry-After": str(self.retry_after_s)},
            ) from exc
        return ImageOutputs(logits, features)


def load_model(version: ModelVersion, settings: Settings) -> OnnxModel | OpenVinoModel:
    """The configured runtime and precision (settings ``runtime``, ``model_precision``)."""
    if settings.model_precision not in version.precisions:
        raise EngineError(
            f"model_precision={settings.model_precision}, but {version.manifest.name}/{version.manifest.version} "
            f"has only {', '.join(version.precisions)} (`alexnet publish` builds int8 and bf16 models)"
        )
    if settings.runtime == "openvino":
        return OpenVinoModel(version, settings.model_precision, settings.intra_op_threads)
    if settings.model_precision == "bf16":
        raise EngineError("model_precision=bf16 needs runtime=openvino (ONNX Runtime's CPU kernels are fp32/int8)")
    on_cpu = choose_providers(settings.providers, ort.get_available_providers())[0] == CPU
    threads = plan_parallelism(settings, onnxruntime_cpu=on_cpu).threads
    return OnnxModel(
        version,
        settings.providers,
        threads,
        settings.intra_op_spinning,
        settings.model_precision,
        settings.cuda_conv_algo_search,
    )


def load_engine(settings: Settings, metrics: Metrics) -> Engine:
    """Load the configured version (checksums verified) and open its ONNX Runtime session."""
    version = load_version(settings.store_root, settings.model_name, settings.model_version)
    model = load_model(version, settings)
    log.info("loaded %s from %s (provider %s)", version.manifest.version, version.path, model.provider)
    return Engine(version, model, settings, metrics)
