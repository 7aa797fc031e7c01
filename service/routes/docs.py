"""The API's documentation page, served with no network: GET /docs (Swagger UI) loads its script and
style from GET /docs/assets/{name} and its icon from the web page's /static/favicon.svg, so it works
where neither the server nor its reader can reach a CDN (FastAPI's own page loads them from one).
There is no /redoc: ReDoc's footer fetches its logo from a CDN whatever it is given.

The assets are the Swagger UI 5 build that the ``fastapi-offline`` package ships (Swagger UI 4, as in
``swagger-ui-bundle``, cannot show the OpenAPI 3.1 document FastAPI writes); only its files are used.
As in ``service.routes.web``, the files come from a fixed list, so no request path
ever reaches the file system.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse

from service.errors import NotFound

ASSET_DIR = Path(str(files("fastapi_offline").joinpath("static")))
# name -> content type: the files the page loads
ASSET_TYPES = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
}
ASSET_HEADERS = {"X-Content-Type-Options": "nosniff", "Cache-Control": "public, max-age=86400"}
# the page may load and call nothing but the server: Swagger UI starts from an inline script and styles inline
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' "
    "'unsafe-inline'; img-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
}
ASSETS_PATH = "/docs/assets"
FAVICON_PATH = "/static/favicon.svg"  # service/static, served by service.routes.web

router = APIRouter(tags=["docs"], include_in_schema=False)


def _under_root(request: Request, path: str) -> str:
    """``path`` as the browser must ask for it when the service runs behind a path prefix."""
    return request.scope.get("root_path", "").rstrip("/") + path


@router.get("/docs")
def swagger_ui(request: Request) -> HTMLResponse:
    page = get_swagger_ui_html(
        openapi_url=_under_root(request, request.app.openapi_url),
        title=f"{request.app.title} - Swagger UI",
        swagger_js_url=_under_root(request, f"{ASSETS_PATH}/swagger-ui-bundle.js"),
        swagger_css_url=_under_root(request, f"{ASSETS_PATH}/swagger-ui.css"),
        swagger_favicon_url=_under_root(request, FAVICON_PATH),
        oauth2_redirect_url=None,  # the API's only security scheme is the X-API-Key header
        swagger_ui_parameters=request.app.swagger_ui_parameters,
    )
    page.headers.update(PAGE_HEADERS)
    return page


@router.get(ASSETS_PATH + "/{name}")
def asset(name: str) -> FileResponse:
    if name not in ASSET_TYPES:
        raise NotFound(f"no documentation asset {name!r}")
    return FileResponse(ASSET_DIR / name, media_type=ASSET_TYPES[name], headers=ASSET_HEADERS)
