"""The model side of the service: preprocessing off the event loop, the dynamic batcher in front of
the model (``service/runtime.py``), admission control (``max_queue`` images in flight) and the
inference timeout.
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

from model_store.manifest import Manifest
from model_store.preprocessing import ImageError, Prepared, Preprocessor, Tta
from model_store.store import ModelVersion, load_version
from service.batching import BatcherClosed, DynamicBatcher
from service.errors import InferenceTimeout, NotReady, Overloaded
from service.metrics import Metrics
from service.parallelism import Parallelism, plan_decode_threads
from service.runtime import CUDA, Model, RuntimeChoice, load_model, runtime_choice
from service.settings import TEN_CROP, Settings
from service.uploads import Upload

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ImageOutputs:
    logits: np.ndarray  # [crops, C]
    features: np.ndarray  # [crops, 4096]


class Engine:
    def __init__(
        self,
        version: ModelVersion,
        model: Model,
        settings: Settings,
        metrics: Metrics,
        choice: RuntimeChoice | None = None,
    ):
        self.version = version
        self.model = model
        # which runtime and precision, and why (/readyz); a model given directly is reported as given
        runtime = getattr(model, "runtime", type(model).__name__)
        self.choice = choice or RuntimeChoice(runtime, model.precision, "given: the engine was built on this model")
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

    async def prepare(self, data: bytes, tta: Tta, thumbnail: bool = False) -> Prepared:
        """Decode and crop on the decode threads (raises ImageError for bad bytes)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._decoders, self.preprocessor.prepare, data, tta, thumbnail)

    async def prepare_uploads(self, uploads: Sequence[Upload], tta: Tta, thumbnail: bool = False) -> list[Prepared]:
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

    async def infer_all(self, prepared: Sequence[Prepared]) -> list[ImageOutputs]:
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


def load_engine(settings: Settings, metrics: Metrics) -> Engine:
    """Load the configured version (checksums verified) and its model on the chosen runtime."""
    version = load_version(settings.store_root, settings.model_name, settings.model_version)
    choice = runtime_choice(version, settings)
    model = load_model(version, settings, choice)
    log.info("loaded %s from %s (provider %s)", version.manifest.version, version.path, model.provider)
    return Engine(version, model, settings, metrics, choice)
