"""The web page for people: GET / is ``static/index.html``, GET /static/{name} its script and style.

The page is plain HTML, CSS and JS with no build step, and talks only to the public API (POST
/classify, POST /similar, GET /v1/models, the gallery thumbnails), as the SDK does. The files are
served from a fixed list read at import, so no request path ever reaches the file system.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

from service.errors import NotFound

STATIC_DIR = Path(__file__).resolve().parents[1] / "static"
STATIC_FILES = {path.name: path for path in STATIC_DIR.iterdir() if path.is_file()} if STATIC_DIR.is_dir() else {}
# the page loads nothing but its own script, style, the API's answers and images (thumbnails from
# the server, the chosen file as a blob: URL)
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' blob:; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
}

router = APIRouter(tags=["web"], include_in_schema=False)


def static_file(name: str) -> FileResponse:
    if name not in STATIC_FILES:
        raise NotFound(f"no static file {name!r}")
    return FileResponse(STATIC_FILES[name], headers=PAGE_HEADERS)


@router.get("/")
def index() -> FileResponse:
    return static_file("index.html")


@router.get("/static/{name}")
def static(name: str) -> FileResponse:
    return static_file(name)
