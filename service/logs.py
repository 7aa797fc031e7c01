"""The server's logging: uvicorn's plain text (the default; access lines end with the request id),
or one JSON object per line (``ALEXNET_LOG_FORMAT=json``) for log collectors, each with the request
id of the request it was written for."""

from __future__ import annotations

import contextvars
import copy
import datetime
import json
import logging
import sys

# Set by RequestIdMiddleware in the task that serves the request, where uvicorn's access line and
# its traceback of a failed request are written too
current_request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_ACCESS_FIELDS = ("client", "method", "path", "http_version", "status")  # uvicorn.access's arguments


class JsonFormatter(logging.Formatter):
    """A record as one line of JSON: time (UTC), level, logger, message, request_id (within a
    request), exception (a traceback), and for uvicorn's access lines their fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if (request_id := current_request_id.get()) is not None:
            entry["request_id"] = request_id
        if record.name == "uvicorn.access" and isinstance(record.args, tuple) and len(record.args) == 5:
            entry.update(zip(_ACCESS_FIELDS, record.args, strict=True))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure(log_format: str, level: str) -> dict | None:
    """Set up this process's logging; returns the ``log_config`` for uvicorn.run (None: leave
    logging as it is set here)."""
    logging.getLogger("faiss.loader").setLevel(logging.WARNING)  # which CPU build it picked, at length
    if log_format == "json":  # uvicorn's loggers, left unconfigured, pass their records to the root's
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonFormatter())
        logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
        return None
    logging.basicConfig(level=level.upper(), format=TEXT_FORMAT, force=True)
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)  # uvicorn's, with the request id at the end of access lines
    config["formatters"]["access"]["fmt"] += " [%(request_id)s]"
    config["filters"] = {"request_id": {"()": RequestIdFilter}}
    config["handlers"]["access"]["filters"] = ["request_id"]
    return config


class RequestIdFilter(logging.Filter):
    """Adds ``request_id`` (the request's, or "-") to the records it passes."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = current_request_id.get() or "-"
        return True
