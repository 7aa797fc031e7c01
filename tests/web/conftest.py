"""Fixtures of the web page tests: headless Chromium (found on this machine, never downloaded)
driven by selenium, and an httpx client for the API's own answers."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import httpx
import pytest
from web_helpers import BrowserUnavailable, check_browser, chromium

if TYPE_CHECKING:
    from selenium.webdriver.remote.webdriver import WebDriver


@pytest.fixture(scope="session")
def browser() -> Iterator[WebDriver]:
    """One headless Chromium for the session; the tests are skipped where none can be had. Ask for
    it before ``live_service`` so a skip costs no model publishing."""
    try:
        check_browser()
    except BrowserUnavailable as exc:
        pytest.skip(f"no headless browser for the web page tests: {exc} (apt-get install chromium chromium-driver)")
    with chromium() as driver:
        driver.set_page_load_timeout(30)
        yield driver


@pytest.fixture
def api(live_service) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live_service.url, timeout=60) as client:
        yield client
