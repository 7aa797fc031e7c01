"""The web page end to end: headless Chromium on the real service (loopback), a real Caltech-101
test photo picked with the page's file input, and what the page shows checked against the API's
own answers for the same bytes (fetched with httpx)."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest
from web_helpers import query_file, shown_neighbors, shown_predictions, shown_text, wait_for_answer, wait_for_images

from training.index import gallery_images

pytest.importorskip("selenium", reason="selenium is not installed (pip install selenium)")
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

WAIT_S = 60
# Shown with one decimal (percent) or two (distance); the browser's request may share an ONNX
# Runtime batch with its other request, which moves float32 results by about 1e-6.
PERCENT_TOLERANCE = 0.05 + 1e-3
DISTANCE_TOLERANCE = 0.005 + 1e-3
TIMING = r"{model} · {what} · server [\d.]+ ms · round trip [\d.]+ ms"


def query_photo(live_service) -> Path:
    """The first test30 photo of one of the tiny model's classes."""
    ((_, path),) = gallery_images(live_service.model.data_root, "test30", live_service.model.classes[1:2], 1)
    return path


def open_page(driver, live_service) -> None:
    driver.get(live_service.url + "/")
    model = f"{live_service.model.name} v1"
    WebDriverWait(driver, WAIT_S).until(lambda d: model in d.find_element(By.ID, "model-info").text)


def assert_bars(driver, predictions: list[dict], true_label: str | None) -> None:
    shown = shown_predictions(driver)
    assert [row["label"] for row in shown] == [p["label"] for p in predictions]
    for row, p in zip(shown, predictions, strict=True):
        percent = p["probability"] * 100
        assert row["value"].endswith("%") and abs(float(row["value"][:-1]) - percent) <= PERCENT_TOLERANCE
        assert abs(row["width"] - percent) <= PERCENT_TOLERANCE
        assert row["true_label"] == (row["label"] == true_label)
        assert row["tag"] == ("true label" if row["label"] == true_label else None)


def assert_neighbors(driver, neighbors: list[dict]) -> None:
    shown = shown_neighbors(driver)
    assert len(shown) == len(neighbors) and {n["id"] for n in shown} == {n["id"] for n in neighbors}
    distances = [n["distance"] for n in neighbors]
    for row, expected in zip(shown, neighbors, strict=True):
        # two neighbours equally near may come in either order
        tied = sum(abs(expected["distance"] - d) < 1e-4 for d in distances) > 1
        assert row["id"] == expected["id"] or tied
        expected = next(n for n in neighbors if n["id"] == row["id"])
        assert row["label"] == expected["label"] and row["src"] == expected["thumbnail_url"]
        assert row["distance"].startswith("distance ")
        assert abs(float(row["distance"].split()[1]) - expected["distance"]) <= DISTANCE_TOLERANCE
        assert row["loaded"], f"thumbnail {row['src']} did not load"
        assert row["alt"] == f"Gallery item {row['id']}, {row['label']}"


def test_photo_query_shows_bars_and_neighbours_and_a_neighbour_becomes_the_next_query(
    browser, live_service, api: httpx.Client
) -> None:
    photo = query_photo(live_service)
    jpeg = photo.read_bytes()
    # the API's defaults (top 5, ten crops, k = 6) are what the page sends unless changed
    classified = api.post("/classify", files={"files": (photo.name, jpeg, "image/jpeg")}).json()
    found = api.post("/similar", files={"file": (photo.name, jpeg, "image/jpeg")}).json()
    model = f"{live_service.model.name} v1"

    open_page(browser, live_service)
    browser.find_element(By.TAG_NAME, "body").send_keys(Keys.TAB)  # the file picker is reached by keyboard
    assert browser.switch_to.active_element.get_attribute("id") == "file-input"
    assert query_file(browser, photo, WAIT_S) == "done"
    wait_for_images(browser, WAIT_S)

    assert_bars(browser, classified["results"][0]["predictions"], true_label=None)
    assert_neighbors(browser, found["neighbors"])
    text = shown_text(browser)
    assert f"{len(live_service.model.classes)} classes" in text["model"]
    assert text["caption"] == photo.name and text["query_src"].startswith("blob:") and text["query_loaded"]
    assert not text["note"] and text["results_shown"] and not text["error_shown"]
    assert re.fullmatch(TIMING.format(model=model, what="TTA ten_crop"), text["classify_timing"])
    assert re.fullmatch(TIMING.format(model=model, what="query feature center"), text["similar_timing"])

    # a neighbour clicked is the next query, by id: /similar gives no predictions for it, so the
    # page classifies its thumbnail (and says so), marking the item's known label
    target = found["neighbors"][0]
    by_id = api.post("/similar", data={"id": target["id"]}).json()
    thumbnail = api.get(target["thumbnail_url"]).content
    thumbnail_name = f"gallery-{target['id']}-thumbnail.jpg"
    thumbnail_classified = api.post("/classify", files={"files": (thumbnail_name, thumbnail, "image/jpeg")}).json()
    assert by_id["query"]["label"] == target["label"] and by_id["query"]["predictions"] is None

    browser.find_element(By.CSS_SELECTOR, f"#neighbors button[data-id='{target['id']}']").click()
    assert wait_for_answer(browser, f"id:{target['id']}", WAIT_S) == "done"
    wait_for_images(browser, WAIT_S)

    assert_bars(browser, thumbnail_classified["results"][0]["predictions"], true_label=target["label"])
    assert_neighbors(browser, by_id["neighbors"])
    assert target["id"] not in {n["id"] for n in shown_neighbors(browser)}  # an id query excludes the item
    text = shown_text(browser)
    assert text["caption"].startswith(f"Gallery item #{target['id']}: {target['label']}")
    assert text["query_src"] == target["thumbnail_url"] and text["query_loaded"]
    assert "thumbnail" in text["note"]
    assert re.fullmatch(TIMING.format(model=model, what="TTA ten_crop"), text["classify_timing"])


def test_a_bad_file_shows_the_servers_message_and_the_next_query_recovers(
    browser, live_service, api: httpx.Client, tmp_path: Path
) -> None:
    bad = tmp_path / "not-a-photo.jpg"
    bad.write_bytes(b"plain text with a .jpg name, not a JPEG\n" * 4)
    answer = api.post("/classify", files={"files": (bad.name, bad.read_bytes(), "image/jpeg")})
    assert answer.status_code == 400
    error = answer.json()["error"]

    open_page(browser, live_service)
    assert query_file(browser, bad, WAIT_S) == "error"
    text = shown_text(browser)
    assert text["error_shown"] and not text["results_shown"]
    assert (text["error_message"], text["error_code"], text["error_status"]) == (error["message"], error["code"], "400")
    assert re.fullmatch(r"[0-9a-f]{32}", text["error_request"])  # the id the server's logs carry
    assert browser.find_element(By.ID, "error").get_attribute("role") == "alert"

    assert query_file(browser, query_photo(live_service), WAIT_S) == "done"
    text = shown_text(browser)
    assert text["results_shown"] and not text["error_shown"]
