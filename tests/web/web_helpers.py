"""The browser helpers of ``scripts/screenshot.py`` (a script, not a package: loaded from its file),
and what the web page shows, read in one script call each."""

from __future__ import annotations

import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "screenshot.py"
_spec = importlib.util.spec_from_file_location("screenshot", SCRIPT)
assert _spec is not None and _spec.loader is not None
screenshot = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(screenshot)

BrowserUnavailable = screenshot.BrowserUnavailable
check_browser = screenshot.check_browser
chromium = screenshot.chromium
query_file = screenshot.query_file
wait_for_answer = screenshot.wait_for_answer
wait_for_images = screenshot.wait_for_images

SHOWN_PREDICTIONS = """
return [...document.querySelectorAll('#predictions li')].map(li => ({
  label: li.querySelector('.bar-label').firstChild.textContent,
  value: li.querySelector('.bar-value').innerText,
  width: parseFloat(li.querySelector('.bar-fill').style.width),
  tag: li.querySelector('.tag') ? li.querySelector('.tag').innerText : null,
  true_label: li.classList.contains('true-label'),
}))"""

SHOWN_NEIGHBORS = """
return [...document.querySelectorAll('#neighbors button')].map(button => {
  const img = button.querySelector('img');
  return {
    id: Number(button.dataset.id),
    label: button.querySelector('.thumb-label').innerText,
    distance: button.querySelector('.thumb-distance').innerText,
    src: img.getAttribute('src'),
    alt: img.alt,
    loaded: img.complete && img.naturalWidth > 0,
  };
})"""

SHOWN_TEXT = """
const text = (id) => document.getElementById(id).innerText;
const img = document.getElementById('query-image');
return {
  model: text('model-info'), caption: text('query-caption'), note: text('predictions-note'),
  classify_timing: text('classify-timing'), similar_timing: text('similar-timing'),
  query_src: img.getAttribute('src'), query_alt: img.alt, query_loaded: img.complete && img.naturalWidth > 0,
  results_shown: !document.getElementById('results').hidden, error_shown: !document.getElementById('error').hidden,
  error_message: text('error-message'), error_code: text('error-code'), error_status: text('error-status'),
  error_request: document.getElementById('error-request-detail').hidden ? null : text('error-request'),
}"""


def shown_predictions(driver) -> list[dict]:
    return driver.execute_script(SHOWN_PREDICTIONS)


def shown_neighbors(driver) -> list[dict]:
    return driver.execute_script(SHOWN_NEIGHBORS)


def shown_text(driver) -> dict:
    return driver.execute_script(SHOWN_TEXT)
