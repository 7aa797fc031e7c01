"""The API's documentation page, /docs (Swagger UI), works with no network: it loads nothing but the
server's own files, and a real browser shows the API's operations on it."""

from __future__ import annotations

import re

import httpx
import pytest
from fake_serving import FastService

CONTENT_TYPES = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml", ".json": "application/json"}
# every URL a docs page makes its browser fetch: its links and scripts, and the OpenAPI document
REFERENCE = re.compile(r"""(?:href|src|spec-url)="([^"]*)"|\burl: '([^']*)'""")


@pytest.fixture
def api(fast: FastService) -> httpx.Client:
    """The service app in process, on the fake model (tests/fake_serving.py): these routes serve
    files and documents, whatever the model."""
    return fast.client


def referenced(html: str) -> list[str]:
    return [a or b for a, b in REFERENCE.findall(html)]


@pytest.mark.parametrize(
    ("page", "assets"),
    [
        ("/docs", {"/docs/assets/swagger-ui-bundle.js", "/docs/assets/swagger-ui.css", "/static/favicon.svg"}),
    ],
)
def test_docs_page_loads_only_the_servers_own_files(api: httpx.Client, page: str, assets: set[str]) -> None:
    response = api.get(page)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in response.headers["content-security-policy"]  # nor may its scripts
    assert not re.search(r"https?://|//[a-z]", response.text, re.IGNORECASE), "the page loads something from outside"
    urls = referenced(response.text)
    assert set(urls) == assets | {"/openapi.json"}
    for url in urls:
        answer = api.get(url)
        assert answer.status_code == 200, url
        assert answer.headers["content-type"].startswith(CONTENT_TYPES[url[url.rindex(".") :]]), url
        assert len(answer.content) > 100, url
    script = api.get(next(url for url in urls if url.endswith(".js")))
    assert "SwaggerUIBundle" in script.text  # the real library, not a stub


def test_only_the_listed_docs_assets_are_served(api: httpx.Client) -> None:
    for path in ("/docs/assets/missing.js", "/docs/assets/..%2F__init__.py", "/docs/assets/%2E%2E%2Fcore.py"):
        response = api.get(path)
        assert response.status_code == 404, path
        assert set(response.json()["error"]) == {"code", "message"}, path


def test_docs_pages_are_not_in_the_openapi_document(api: httpx.Client) -> None:
    paths = api.get("/openapi.json").json()["paths"]
    assert not {"/docs", "/docs/assets/{name}"} & set(paths)
    assert api.get("/redoc").status_code == 404  # no page that would need a CDN


@pytest.mark.parametrize(("page", "operations"), [("/docs", ".opblock-summary-path")])
def test_browser_shows_the_api_operations(browser, live_service, page: str, operations: str) -> None:
    """Swagger UI 5 renders the OpenAPI 3.1 document FastAPI writes (Swagger UI 4 shows an error
    instead), from the files the server gives it."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(live_service.url + page)
    WebDriverWait(browser, 30).until(
        lambda d: "/classify" in d.find_element(By.TAG_NAME, "body").text, f"{page} shows no /classify in 30s"
    )
    assert browser.find_elements(By.CSS_SELECTOR, operations), f"{page} shows no operations"
    body = browser.find_element(By.TAG_NAME, "body").text
    assert "/similar" in body and "Unable to render" not in body and "Something went wrong" not in body
    loaded = browser.execute_script("return performance.getEntriesByType('resource').map(entry => entry.name)")
    assert loaded and all(url.startswith(live_service.url + "/") for url in loaded), loaded
