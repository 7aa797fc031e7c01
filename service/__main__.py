"""``python -m service``: serve the app with uvicorn, configured by ``ALEXNET_*`` variables
(``--host`` and ``--port`` override the two most often changed)."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from typing import Any

import uvicorn
from pydantic import ValidationError

from service import logs
from service.app import create_app
from service.settings import Settings, add_bind_args, bind_overrides, settings_help

log = logging.getLogger("service")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m service",
        description="Serve the published model with uvicorn. Every setting is an ALEXNET_* environment "
        "variable (listed below); --host and --port override two of them.",
        epilog=settings_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_bind_args(parser)
    return parser.parse_args(argv)


def read_settings(**overrides: Any) -> Settings | None:
    """The settings from the environment, with ``overrides`` (e.g. the flags) over it; None, with the
    errors logged, when they are invalid."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        log.error("invalid settings:\n%s", exc)
        return None


def serve(settings: Settings) -> int:
    """Serve the app made with ``settings`` until uvicorn stops (``python -m service``, ``alexnet serve``)."""
    log_config = logs.configure(settings.log_format, settings.log_level)
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_config=log_config,
        log_level=settings.log_level,
        access_log=settings.access_log,
        timeout_graceful_shutdown=10,
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format=logs.TEXT_FORMAT)
    settings = read_settings(**bind_overrides(args))  # the environment, then the flags over it
    return 2 if settings is None else serve(settings)


if __name__ == "__main__":
    sys.exit(main())
