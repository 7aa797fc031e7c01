"""service/batching.py: jobs share runs up to the size limit, each gets its own rows back."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest

from service.batching import BatcherClosed, DynamicBatcher, split_rows


class RecordingModel:
    """A real (numpy) batch function that records the batch sizes it was given and the thread."""

    def __init__(self, delay: float = 0.0, fail: bool = False):
        self.batches: list[int] = []
        self.threads: set[str] = set()
        self.delay = delay
        self.fail = fail
        self.release = threading.Event()

    def __call__(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        self.batches.append(len(crops))
        self.threads.add(threading.current_thread().name)
        if self.delay:
            self.release.wait(self.delay)
        if self.fail:
            raise RuntimeError("model failed")
        flat = crops.reshape(len(crops), -1)
        return flat.sum(axis=1), flat * 2


def job(value: float, crops: int) -> np.ndarray:
    return np.full((crops, 2), value, np.float32)


def run(coro):
    return asyncio.run(coro)


def test_concurrent_jobs_share_batches_and_get_their_own_rows() -> None:
    model = RecordingModel()

    async def main() -> list[tuple[np.ndarray, ...]]:
        batcher = DynamicBatcher(model, max_batch=25, max_wait_s=0.2)
        batcher.start()
        try:
            return await asyncio.gather(*(batcher.submit(job(i, 10 if i % 2 else 1)) for i in range(6)))
        finally:
            await batcher.close()

    results = run(main())
    for i, (sums, doubled) in enumerate(results):
        crops = 10 if i % 2 else 1
        np.testing.assert_array_equal(sums, np.full(crops, 2.0 * i))
        assert doubled.shape == (crops, 2)
    assert sum(model.batches) == 33 and max(model.batches) <= 25 and len(model.batches) < 6
    assert model.threads == {"inference_0"}  # off the event loop, on the one worker thread


def test_a_lone_job_waits_at_most_max_wait() -> None:
    model = RecordingModel()

    async def main() -> float:
        batcher = DynamicBatcher(model, max_batch=64, max_wait_s=0.05)
        batcher.start()
        loop = asyncio.get_running_loop()
        started = loop.time()
        await batcher.submit(job(1, 1))
        elapsed = loop.time() - started
        await batcher.close()
        return elapsed

    assert 0.04 <= run(main()) < 1.0
    assert model.batches == [1]


def test_jobs_queued_during_a_run_form_the_next_batch() -> None:
    model = RecordingModel(delay=0.3)

    async def main() -> None:
        batcher = DynamicBatcher(model, max_batch=64, max_wait_s=0)
        batcher.start()
        first = asyncio.ensure_future(batcher.submit(job(0, 10)))
        await asyncio.sleep(0.05)  # the first batch is running now
        rest = [asyncio.ensure_future(batcher.submit(job(i, 10))) for i in range(1, 5)]
        await asyncio.sleep(0.05)
        assert batcher.queue_depth == 4
        model.release.set()
        await asyncio.gather(first, *rest)
        await batcher.close()

    run(main())
    assert model.batches == [10, 40]


def test_errors_reach_every_caller_and_the_batcher_keeps_serving() -> None:
    model = RecordingModel(fail=True)

    async def main() -> None:
        batcher = DynamicBatcher(model, max_batch=64, max_wait_s=0.01)
        batcher.start()
        outcomes = await asyncio.gather(batcher.submit(job(1, 1)), batcher.submit(job(2, 1)), return_exceptions=True)
        assert all(isinstance(o, RuntimeError) for o in outcomes)
        model.fail = False
        (sums, _) = await batcher.submit(job(3, 1))
        assert sums[0] == 6
        await batcher.close()

    run(main())


@pytest.mark.parametrize("workers", [1, 2])
def test_close_fails_waiting_jobs_and_later_submits(workers: int) -> None:
    model = RecordingModel(delay=0.5)

    async def main() -> None:
        batcher = DynamicBatcher(model, max_batch=10, max_wait_s=0, workers=workers)
        batcher.start()
        running = asyncio.ensure_future(batcher.submit(job(0, 10)))
        await asyncio.sleep(0.05)
        waiting = asyncio.ensure_future(batcher.submit(job(1, 10)))
        await asyncio.sleep(0.01)
        await batcher.close()
        with pytest.raises(BatcherClosed):
            await waiting
        with pytest.raises(BatcherClosed):
            await running  # cancelled mid-run: its caller hears of it rather than waiting forever
        with pytest.raises(BatcherClosed):
            await batcher.submit(job(2, 1))

    run(main())


def test_oversized_jobs_are_refused() -> None:
    async def main() -> None:
        batcher = DynamicBatcher(RecordingModel(), max_batch=10, max_wait_s=0)
        batcher.start()
        with pytest.raises(ValueError, match="1..10"):
            await batcher.submit(job(0, 11))
        await batcher.close()

    run(main())


class GatedModel(RecordingModel):
    """Holds each run whose first value is 0 until ``release`` is set; fails runs holding a -1."""

    def __call__(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if crops.flat[0] == 0:
            self.release.wait(5)
        if (crops == -1).any():
            self.batches.append(len(crops))
            raise RuntimeError("model failed")
        return super().__call__(crops)


class MeetingModel(RecordingModel):
    """Each run waits (up to 5 s) until ``parties`` runs are under way at once."""

    def __init__(self, parties: int):
        super().__init__()
        self.meeting = threading.Barrier(parties, timeout=5)

    def __call__(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        self.meeting.wait()  # BrokenBarrierError unless the shares run side by side
        return super().__call__(crops)


def test_a_batch_finding_idle_workers_is_split_across_them_in_order() -> None:
    model = MeetingModel(parties=2)
    crops = np.arange(20, dtype=np.float32).reshape(10, 2) + 1

    async def main() -> tuple[np.ndarray, ...]:
        batcher = DynamicBatcher(model, max_batch=20, max_wait_s=0, workers=2)
        batcher.start()
        try:
            return await batcher.submit(crops)
        finally:
            await batcher.close()

    sums, doubled = run(main())
    np.testing.assert_array_equal(sums, crops.sum(axis=1))  # each row's own output, in order
    np.testing.assert_array_equal(doubled, crops * 2)
    assert sorted(model.batches) == [5, 5]
    assert model.threads == {"inference_0", "inference_1"}  # side by side, one share per worker


def test_a_busy_worker_does_not_hold_up_the_next_batch() -> None:
    model = GatedModel()

    async def main() -> None:
        batcher = DynamicBatcher(model, max_batch=20, max_wait_s=0, workers=2)
        batcher.start()
        first = asyncio.ensure_future(batcher.submit(job(0, 1)))  # one crop: one worker, held
        await asyncio.sleep(0.05)
        (sums, _) = await asyncio.wait_for(batcher.submit(job(1, 10)), 2)  # runs on the other worker
        np.testing.assert_array_equal(sums, np.full(10, 2.0))
        assert not first.done()
        model.release.set()
        await first
        await batcher.close()

    run(main())
    assert model.batches == [10, 1]  # the ten crops whole: only one worker was idle


def test_a_failed_share_fails_its_batch_and_frees_every_worker() -> None:
    model = GatedModel()
    model.release.set()
    bad = np.ones((10, 2), np.float32)
    bad[9] = -1  # in the second share only

    async def main() -> None:
        batcher = DynamicBatcher(model, max_batch=20, max_wait_s=0, workers=2)
        batcher.start()
        with pytest.raises(RuntimeError, match="model failed"):
            await batcher.submit(bad)
        (sums, _) = await asyncio.wait_for(batcher.submit(job(3, 10)), 2)
        assert sums[0] == 6
        await batcher.close()

    run(main())
    assert sorted(model.batches[:2]) == [5, 5] and sorted(model.batches[2:]) == [5, 5]  # both workers idle again


@pytest.mark.parametrize("shares", [1, 2, 3, 7])
def test_split_rows_cuts_jobs_like_array_split_without_copying(shares: int) -> None:
    jobs = [np.arange(n * 2, dtype=np.float32).reshape(n, 2) + 100 * i for i, n in enumerate([1, 10, 3, 1])]
    stacked = np.concatenate(jobs)
    pieces = split_rows(jobs, shares)
    expected = np.array_split(stacked, shares)
    assert [sum(len(p) for p in share) for share in pieces] == [len(e) for e in expected]
    for share, want in zip(pieces, expected, strict=True):
        np.testing.assert_array_equal(np.concatenate(share), want)
        assert all(any(np.shares_memory(p, j) for j in jobs) for p in share)  # views of the jobs' own arrays
        assert all(len(p) for p in share)  # no empty pieces
