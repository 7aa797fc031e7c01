"""Dynamic batching: concurrent requests' crops are concatenated into one model run.

One collector task takes jobs (the crops of one image) off a queue until the batch holds
``max_batch`` crops or ``max_wait_s`` has passed since its first job was queued, then runs the
batch on a single worker thread, off the event loop. While a batch runs new jobs queue up, so
the next batch is bigger: throughput grows with load, and an idle server answers after at most
``max_wait_s`` of waiting.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

log = logging.getLogger(__name__)

RunBatch = Callable[[np.ndarray], tuple[np.ndarray, ...]]
OnBatch = Callable[[int, int, float], None]  # crops, images, seconds


class BatcherClosed(RuntimeError):
    """The batcher is not running (not started yet, or shutting down)."""


@dataclass
class _Job:
    crops: np.ndarray
    future: asyncio.Future[tuple[np.ndarray, ...]]
    queued_at: float = field(default_factory=time.monotonic)


class DynamicBatcher:
    def __init__(self, run: RunBatch, max_batch: int, max_wait_s: float, on_batch: OnBatch | None = None):
        if max_batch < 1 or max_wait_s < 0:
            raise ValueError("max_batch must be >= 1 and max_wait_s >= 0")
        self._run = run
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self._on_batch = on_batch
        self._queue: asyncio.Queue[_Job] = asyncio.Queue()
        self._batch: list[_Job] = []  # being collected or run (failed by close() if cancelled)
        self._held: _Job | None = None  # a job that did not fit into the previous batch
        self._executor: ThreadPoolExecutor | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def queue_depth(self) -> int:
        """Images waiting for a batch."""
        return self._queue.qsize() + (self._held is not None)

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        if self.running:
            return
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="inference")
        self._task = asyncio.get_running_loop().create_task(self._serve(), name="dynamic-batcher")

    async def close(self) -> None:
        """Stop taking jobs, fail the queued ones, let a running batch finish."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        pending = self._batch + ([self._held] if self._held else [])
        self._batch, self._held = [], None
        while not self._queue.empty():
            pending.append(self._queue.get_nowait())
        for job in pending:
            if not job.future.done():
                job.future.set_exception(BatcherClosed("the service is shutting down"))
        if self._executor is not None:
            await asyncio.to_thread(self._executor.shutdown, wait=True)
            self._executor = None

    async def submit(self, crops: np.ndarray) -> tuple[np.ndarray, ...]:
        """The model's outputs for ``crops`` (the rows of one image), run within some batch."""
        if not self.running:
            raise BatcherClosed("the batcher is not running")
        if not 1 <= len(crops) <= self.max_batch:
            raise ValueError(f"a job must have 1..{self.max_batch} crops, got {len(crops)}")
        job = _Job(crops, asyncio.get_running_loop().create_future())
        self._queue.put_nowait(job)
        return await job.future

    async def _collect(self) -> None:
        first = self._held or await self._queue.get()
        self._held = None
        self._batch = [first]
        size = len(first.crops)
        deadline = first.queued_at + self.max_wait_s
        while size < self.max_batch:
            if self._queue.empty():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    job = await asyncio.wait_for(self._queue.get(), remaining)
                except TimeoutError:
                    break
            else:
                job = self._queue.get_nowait()
            if size + len(job.crops) > self.max_batch:
                self._held = job
                break
            self._batch.append(job)
            size += len(job.crops)

    async def _serve(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._collect()
            batch = self._batch = [job for job in self._batch if not job.future.done()]  # done: caller gave up
            if not batch:
                continue
            crops = np.concatenate([job.crops for job in batch]) if len(batch) > 1 else batch[0].crops
            started = time.perf_counter()
            try:
                outputs = await loop.run_in_executor(self._executor, self._run, crops)
            except Exception as exc:
                log.exception("inference failed on a batch of %d crops", len(crops))
                for job in batch:
                    if not job.future.done():
                        job.future.set_exception(exc)
                self._batch = []
                continue
            if self._on_batch is not None:
                self._on_batch(len(crops), len(batch), time.perf_counter() - started)
            offset = 0
            for job in batch:
                end = offset + len(job.crops)
                if not job.future.done():
                    job.future.set_result(tuple(out[offset:end] for out in outputs))
                offset = end
            self._batch = []
