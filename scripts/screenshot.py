"""Screenshot of the web page answering a query: open a running service's page in headless
Chromium, pick an image with the page's file input, wait for the bars and the neighbours, save a PNG.

    python scripts/screenshot.py http://127.0.0.1:8000 path/to/photo.jpg [--out docs/screenshot.png]

Needs Chromium with its chromedriver (Debian: ``apt-get install chromium chromium-driver``) and
``pip install selenium``; nothing is downloaded. Set CHROMIUM_BINARY / CHROMEDRIVER_BINARY where
they are not on PATH. The browser helpers here are also what tests/web drive the page with.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from selenium.webdriver.remote.webdriver import WebDriver

BROWSER_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",  # root in a container has no user namespace for the sandbox
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
)
WINDOW = (1200, 900)


class BrowserUnavailable(RuntimeError):
    """No Chromium, no chromedriver or no selenium here; the message says which."""


def check_browser() -> tuple[str, str]:
    """(browser binary, chromedriver) from CHROMIUM_BINARY / CHROMEDRIVER_BINARY or PATH, once
    selenium imports; raises BrowserUnavailable saying what is missing."""
    try:
        import selenium  # noqa: F401
    except ImportError as exc:
        raise BrowserUnavailable(f"selenium is not importable ({exc}); pip install selenium") from exc
    browser = os.environ.get("CHROMIUM_BINARY") or next(filter(None, map(shutil.which, BROWSER_NAMES)), None)
    driver = os.environ.get("CHROMEDRIVER_BINARY") or shutil.which("chromedriver")
    if not browser:
        raise BrowserUnavailable(f"no Chromium ({', '.join(BROWSER_NAMES)} on PATH, or CHROMIUM_BINARY)")
    if not driver:
        raise BrowserUnavailable("no chromedriver (on PATH, or CHROMEDRIVER_BINARY)")
    return browser, driver


@contextmanager
def chromium(window: tuple[int, int] = WINDOW) -> Iterator[WebDriver]:
    """Headless Chromium with a fresh profile, driven by selenium through the local chromedriver
    (given explicitly, so selenium's driver manager never downloads one)."""
    browser, driver_path = check_browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        options = webdriver.ChromeOptions()
        options.binary_location = browser
        for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--window-size={window[0]},{window[1]}"):
            options.add_argument(flag)
        driver = webdriver.Chrome(service=Service(driver_path), options=options)
        try:
            yield driver
        finally:
            driver.quit()


def wait_for_answer(driver: WebDriver, query_key: str | None, timeout: float) -> str:
    """Wait until the page has answered: results for ``query_key`` (``file:<name>`` or
    ``id:<n>``) are shown, or an error is; returns the page's state (done or error)."""
    from selenium.webdriver.support.ui import WebDriverWait

    def answered(d: WebDriver) -> str | None:
        state, key = d.execute_script(
            "return [document.body.dataset.state, document.getElementById('results').dataset.query]"
        )
        if state == "error" or (state == "done" and (query_key is None or key == query_key)):
            return state
        return None

    return WebDriverWait(driver, timeout).until(answered, f"no answer for {query_key} in {timeout}s")


def wait_for_images(driver: WebDriver, timeout: float) -> None:
    """Wait until every image on the page has loaded (thumbnails come after the answer)."""
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, timeout).until(
        lambda d: d.execute_script(
            "return [...document.images].every(img => !img.getAttribute('src') || img.complete)"
        ),
        f"images not loaded in {timeout}s",
    )


def query_file(driver: WebDriver, image: Path, timeout: float = 60) -> str:
    """Pick ``image`` with the page's file input (as a person would with the file dialog) and wait
    for the answer; returns the page's state (done or error)."""
    from selenium.webdriver.common.by import By

    driver.find_element(By.ID, "file-input").send_keys(str(Path(image).resolve()))
    return wait_for_answer(driver, f"file:{Path(image).name}", timeout)


def save_full_page(driver: WebDriver, out: Path) -> None:
    """Grow the window to the page's height, then save the screenshot."""
    width = driver.get_window_size()["width"]
    chrome = driver.get_window_size()["height"] - driver.execute_script("return window.innerHeight")
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(width, height + chrome)
    out.parent.mkdir(parents=True, exist_ok=True)
    if not driver.save_screenshot(str(out)):
        raise RuntimeError(f"could not save {out}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url", help="the running service, e.g. http://127.0.0.1:8000")
    parser.add_argument("image", type=Path, help="the query image")
    parser.add_argument("--out", type=Path, default=Path("docs/screenshot.png"), help="PNG to write")
    parser.add_argument("--width", type=int, default=WINDOW[0], help="window width in CSS pixels")
    parser.add_argument("--tta", choices=("ten_crop", "center"), default="ten_crop", help="test-time augmentation")
    parser.add_argument("--timeout", type=float, default=60, help="seconds to wait for the answer")
    args = parser.parse_args(argv)
    if not args.image.is_file():
        parser.error(f"no image file {args.image}")
    try:
        with chromium((args.width, WINDOW[1])) as driver:
            from selenium.webdriver.common.by import By
            from selenium.webdriver.support.ui import Select

            driver.get(args.url.rstrip("/") + "/")
            Select(driver.find_element(By.ID, "tta")).select_by_value(args.tta)
            state = query_file(driver, args.image, args.timeout)
            error = driver.find_element(By.ID, "error-message").text
            wait_for_images(driver, args.timeout)
            save_full_page(driver, args.out)
    except BrowserUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if state == "error":
        print(f"the page shows the service's error: {error}; saved anyway: {args.out}", file=sys.stderr)
        return 1
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
