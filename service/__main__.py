"""``python -m service``: serve the app with uvicorn, configured by ``ALEXNET_*`` variables."""

from __future__ import annotations

import logging
import sys

import uvicorn
from pydantic import ValidationError

from service.app import create_app
from service.settings import get_settings

log = logging.getLogger("service")


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = get_settings()
    except ValidationError as exc:
        log.error("invalid ALEXNET_* settings:\n%s", exc)
        return 2
    logging.getLogger().setLevel(settings.log_level.upper())
    logging.getLogger("faiss.loader").setLevel(logging.WARNING)  # which CPU build it picked, at length
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        access_log=settings.access_log,
        timeout_graceful_shutdown=10,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
