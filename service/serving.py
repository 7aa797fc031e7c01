"""What is served: the engine and the gallery of one model version, opened together at start-up and
swapped for another version's while serving (``POST /admin/reload``).

A reload resolves the configured version again (``latest`` picks up a new publish), loads it with
every checksum verified, opens its ONNX Runtime session and gallery and warms it up, all beside the
version being served; only then are the two swapped, in one step on the event loop. The old engine
finishes the images it has admitted before it is closed. If anything fails, nothing is swapped: the
old version goes on serving and the caller gets the reason.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from starlette.datastructures import State

from model_store.store import StoreError, resolve
from service.engine import Engine, load_engine
from service.errors import ReloadFailed
from service.metrics import Metrics
from service.retrieval import Retrieval
from service.retrieval_backends import load_retrieval
from service.settings import Settings

log = logging.getLogger(__name__)
DRAIN_TIMEOUT_S = 60.0
MAX_REASON_CHARS = 1000


async def open_version(settings: Settings, metrics: Metrics) -> tuple[Engine, Retrieval]:
    """The configured version's engine (checksums verified, warmed up) and gallery."""
    engine = await asyncio.to_thread(load_engine, settings, metrics)
    try:
        retrieval = await asyncio.to_thread(load_retrieval, engine.version, settings)
        await engine.start()
    except BaseException:
        await engine.close()
        raise
    return engine, retrieval


def bind_gauges(state: State, metrics: Metrics) -> None:
    """Point the gauges at whatever ``state`` serves, so a reload needs no re-binding."""
    metrics.queue_depth.set_function(lambda: state.engine.batcher.queue_depth if state.engine else 0)
    metrics.in_flight.set_function(lambda: state.engine.in_flight if state.engine else 0)
    metrics.gallery_items.set_function(lambda: len(state.retrieval) if state.retrieval else 0)


@dataclass(frozen=True)
class ReloadOutcome:
    previous: Engine
    current: Engine
    reloaded: bool


async def drain_and_close(engine: Engine, timeout_s: float = DRAIN_TIMEOUT_S) -> None:
    """Close ``engine`` once the images it admitted are done (or after ``timeout_s``)."""
    deadline = time.monotonic() + timeout_s
    while engine.in_flight and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    await engine.close()


async def reload_version(state: State) -> ReloadOutcome:
    """Serve the configured version anew if it now resolves to another folder; raises ReloadFailed
    (and keeps serving the current one) when that version cannot be loaded."""
    settings: Settings = state.settings
    async with state.reload_lock:
        current: Engine = state.engine
        try:
            path = await asyncio.to_thread(resolve, settings.store_root, settings.model_name, settings.model_version)
        except StoreError as exc:
            raise ReloadFailed(f"{exc}; still serving {current.manifest.version}") from exc
        if path.resolve() == current.version.path.resolve():
            # the same folder: reopening it would put a second writer on its gallery
            return ReloadOutcome(current, current, reloaded=False)
        try:
            engine, retrieval = await open_version(settings, state.metrics)
        except Exception as exc:
            log.exception("reload of %s failed; still serving %s", path.name, current.manifest.version)
            reason = f"{type(exc).__name__}: {exc}"[:MAX_REASON_CHARS]
            raise ReloadFailed(
                f"model version {path.name} was not loaded ({reason}); still serving {current.manifest.version}"
            ) from exc
        state.engine, state.retrieval = engine, retrieval  # no await between: requests see one or the other
        log.info("now serving %s (was %s)", engine.manifest.version, current.manifest.version)
    await drain_and_close(current)
    return ReloadOutcome(current, engine, reloaded=True)
