"""How the service serves its web page (no browser needed): GET / and the files under /static."""

from __future__ import annotations

import re

import httpx
import pytest
from fake_serving import FastService

from service.routes.web import STATIC_DIR

CONTENT_TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}


@pytest.fixture
def api(fast: FastService) -> httpx.Client:
    """The service app in process, on the fake model (tests/fake_serving.py): these routes serve
    files and documents, whatever the model."""
    return fast.client


def test_page_and_its_static_files_are_served(api: httpx.Client) -> None:
    page = api.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["x-content-type-options"] == "nosniff"
    referenced = re.findall(r'(?:href|src)="(/static/[^"]+)"', page.text)
    assert {"/static/app.js", "/static/style.css"} <= set(referenced)
    for path in referenced:
        response = api.get(path)
        assert response.status_code == 200, path
        assert response.headers["content-type"].startswith(CONTENT_TYPES[path[path.rindex(".") :]]), path
    assert {f"/static/{p.name}" for p in STATIC_DIR.iterdir()} == {"/static/index.html", *referenced}


def test_only_the_listed_static_files_are_served(api: httpx.Client) -> None:
    for path in ("/static/missing.js", "/static/..%2Fapp.py", "/static/%2E%2E%2Fsettings.py", "/static/"):
        response = api.get(path)
        assert response.status_code == 404, path
        assert set(response.json()["error"]) == {"code", "message"}
