"""Defaults of the client, in one place."""

from __future__ import annotations

import httpx

BASE_URL_ENV = "ALEXNET_API_URL"
API_KEY_ENV = "ALEXNET_API_KEY"
DEFAULT_BASE_URL = "http://127.0.0.1:8000"
API_KEY_HEADER = "X-API-Key"

# Ten-crop inference on a CPU server can take a while for a batch of images, so the read
# timeout is generous; failing to connect at all should be noticed quickly.
DEFAULT_TIMEOUT = httpx.Timeout(60.0, connect=5.0)
DEFAULT_MAX_RETRIES = 2

# Back-off between attempts: INITIAL_RETRY_DELAY * 2**attempt, capped at MAX_RETRY_DELAY, then
# shortened by up to a quarter at random so that many clients do not retry in lock-step.
INITIAL_RETRY_DELAY = 0.5
MAX_RETRY_DELAY = 8.0
# A server's Retry-After is obeyed, but never for longer than this.
MAX_RETRY_AFTER = 60.0

# Statuses that say "the request was not served, try again later". Other 4xx never change on
# retry and 500 is a bug on the server, so neither is retried.
RETRYABLE_STATUSES = frozenset({408, 429, 502, 503, 504})
# For requests that change the gallery, only answers that guarantee the request was not acted
# upon are retried: a 502/504/408 may come after the server already added the images.
NON_IDEMPOTENT_RETRYABLE_STATUSES = frozenset({429, 503})

DEFAULT_CONCURRENCY = 4
