"""Dynamic batching: concurrent requests' crops are concatenated into one model run.

One collector task takes jobs (the crops of one image) off a queue until the batch holds
``max_batch`` crops or ``max_wait_s`` has passed since its first job was queued, then runs the
batch on a worker thread, off the event loop. While batches run new jobs queue up, so the next
batch is bigger: throughput grows with load, and an idle server answers after at most
``max_wait_s`` of waiting.

``workers`` batches run at once (setting ``inference_workers``, 1 by default), each on its own
thread. The collector forms a batch whenever a worker is idle; a batch formed while several are
idle is split by rows across all of them (the ten crops of a lone image run as two halves side by
side), and each worker takes the next batch as soon as its own share is done. Several workers suit
a machine where one run cannot use all of it; they take jobs sooner, so batches are smaller
(``max_wait_s`` trades latency for size). Several workers against one run on every core: measured
in docs/performance.md, section 4 ("Several inference workers").
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
    def __init__(
        self,
        run: RunBatch,
        max_batch: int,
        max_wait_s: float,
        on_batch: OnBatch | None = None,
        workers: int = 1,
    ):
        if max_batch < 1 or max_wait_s < 0 or workers < 1:
            raise ValueError("max_batch and workers must be >= 1 and max_wait_s >= 0")
        self._run = run
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.workers = workers
        self._on_batch = on_batch
        self._queue: asyncio.Queue[_Job] = asyncio.Queue()
        self._batch: list[_Job] = []  # being collected (failed by close() if cancelled)
        self._held: _Job | None = None  # a job that did not fit into the previous batch
        self._idle = 0  # workers not running a share of a batch
        self._worker_freed = asyncio.Event()
        self._running: dict[asyncio.Task[None], list[_Job]] = {}  # batches being run, and their jobs
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
        self._executor = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="inference")
        self._idle = self.workers
        self._task = asyncio.get_running_loop().create_task(self._serve(), name="dynamic-batcher")

    async def close(self) -> None:
        """Stop taking jobs, fail the queued and running ones, let the running batches finish."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        pending = self._batch + ([self._held] if self._held else [])
        for jobs in self._running.values():
            pending += jobs
        self._batch, self._held = [], None
        while not self._queue.empty():
            pending.append(self._queue.get_nowait())
        for job in pending:
            if not job.future.done():
                job.future.set_exception(BatcherClosed("the service is shutting down"))
        if self._executor is not None:
            await asyncio.to_thread(self._executor.shutdown, wait=True)
            self._executor = None
        if self._running:  # their runs have ended with the executor: let the tasks see it
            await asyncio.gather(*self._running, return_exceptions=True)

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
            while self._idle == 0:
                self._worker_freed.clear()
                await self._worker_freed.wait()
            await self._collect()
            batch = [job for job in self._batch if not job.future.done()]  # done: the caller gave up
            self._batch = []
            if not batch:
                continue
            rows = sum(len(job.crops) for job in batch)
            shares = min(self._idle, rows)  # split across the idle workers
            self._idle -= shares
            task = loop.create_task(self._run_batch(batch, rows, shares))
            self._running[task] = batch
            task.add_done_callback(self._running.pop)

    def _run_pieces(self, pieces: list[np.ndarray]) -> tuple[np.ndarray, ...]:
        """On a worker thread: the pieces joined into one batch (copying megabytes, so not on the
        event loop), then the model."""
        return self._run(np.concatenate(pieces) if len(pieces) > 1 else pieces[0])

    async def _run_share(self, pieces: list[np.ndarray]) -> tuple[np.ndarray, ...]:
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, self._run_pieces, pieces)
        finally:
            self._idle += 1
            self._worker_freed.set()

    async def _run_batch(self, batch: list[_Job], rows: int, shares: int) -> None:
        started = time.perf_counter()
        parts = await asyncio.gather(
            *(self._run_share(pieces) for pieces in split_rows([job.crops for job in batch], shares)),
            return_exceptions=True,
        )
        results = [part for part in parts if not isinstance(part, BaseException)]
        if len(results) < len(parts):
            exc = next(part for part in parts if isinstance(part, BaseException))
            log.error("inference failed on a batch of %d crops", rows, exc_info=exc)
            for job in batch:
                if not job.future.done():
                    job.future.set_exception(exc)
            return
        outputs = results[0] if shares == 1 else tuple(np.concatenate(out) for out in zip(*results, strict=True))
        if self._on_batch is not None:
            self._on_batch(rows, len(batch), time.perf_counter() - started)
        offset = 0
        for job in batch:
            end = offset + len(job.crops)
            if not job.future.done():
                job.future.set_result(tuple(out[offset:end] for out in outputs))
            offset = end


def split_rows(arrays: list[np.ndarray], shares: int) -> list[list[np.ndarray]]:
    """The rows of ``arrays`` (stacked one after another) cut into ``shares`` runs of consecutive
    rows as even as ``np.array_split`` cuts them, each a list of views (nothing is copied)."""
    total = sum(len(a) for a in arrays)
    bounds = [total // shares + (i < total % shares) for i in range(shares)]  # np.array_split's sizes
    pieces: list[list[np.ndarray]] = []
    index, offset = 0, 0  # the array being cut, and the first of its rows not yet taken
    for size in bounds:
        share: list[np.ndarray] = []
        while size:
            take = min(size, len(arrays[index]) - offset)
            share.append(arrays[index][offset : offset + take])
            offset += take
            size -= take
            if offset == len(arrays[index]):
                index, offset = index + 1, 0
        pieces.append(share)
    return pieces
