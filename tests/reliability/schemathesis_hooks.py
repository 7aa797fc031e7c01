"""Schemathesis extensions for fuzzing the service (loaded with SCHEMATHESIS_HOOKS=<this file>).

- ``flatmap_body``: the schema can only say "binary" for an upload, so purely generated files are
  never images and every request stops at "not a recognised image format". Here a file part is,
  half of the time, one of the malformed or awkward images of ``malformed_images.corpus`` (made
  from a synthetic photo), so the fuzzer also reaches decoding, inference and the gallery.
  Optional fields generated as null are left out (a form has no null: sending the text "null" only
  tests the integer parser again), and non-negative ids are folded into the range of ids the
  gallery has (``ID_RANGE``), so item lookups, thumbnails and deletes do not all end in 404.
- ``json_error_body``: every answer of 400 or more is exactly ``{"error": {"code", "message"}}``,
  served as application/json, with no traceback in it.
"""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import schemathesis
from hypothesis import strategies as st
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from malformed_images import corpus  # noqa: E402


def _synthetic_photo() -> bytes:
    image = Image.merge("RGB", [Image.effect_noise((320, 240), sigma) for sigma in (40, 60, 80)])
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90)
    return out.getvalue()


SAMPLES = [data for data, _ in corpus(_synthetic_photo()).values() if len(data) < 1_000_000]


ID_RANGE = 32


def _is_file_value(value: object) -> bool:
    return isinstance(value, str | bytes)


def _fold_id(value: object) -> object:
    return value % ID_RANGE if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else value


@schemathesis.hook
def map_path_parameters(context, path_parameters):  # noqa: ANN001, ANN201 - schemathesis' hook signature
    if not isinstance(path_parameters, dict):
        return path_parameters
    return {name: _fold_id(value) for name, value in path_parameters.items()}


@schemathesis.hook
def map_query(context, query):  # noqa: ANN001, ANN201
    if not isinstance(query, dict):
        return query
    return {name: _fold_id(value) if name == "id" else value for name, value in query.items() if value is not None}


@schemathesis.hook
def flatmap_body(context, body):  # noqa: ANN001, ANN201
    if not isinstance(body, dict):
        return st.just(body)
    body = {name: _fold_id(value) if name == "id" else value for name, value in body.items() if value is not None}
    if isinstance(body.get("files"), list) and body["files"] and all(map(_is_file_value, body["files"])):
        count = len(body["files"])
        images = st.lists(st.sampled_from(SAMPLES), min_size=count, max_size=count)
        return st.one_of(st.just(body), images.map(lambda files: {**body, "files": files}))
    if _is_file_value(body.get("file")):
        return st.one_of(st.just(body), st.sampled_from(SAMPLES).map(lambda data: {**body, "file": data}))
    return st.just(body)


@schemathesis.check
def json_error_body(ctx, response, case):  # noqa: ANN001, ANN201
    """Errors are the service's JSON error shape, nothing else."""
    if response.status_code < 400:
        return None
    content_type = response.headers.get("content-type", [""])
    content_type = content_type[0] if isinstance(content_type, list) else content_type
    assert content_type.startswith("application/json"), f"error served as {content_type!r}"
    body = json.loads(response.content)
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, f"not the error shape: {body}"
    assert all(isinstance(body["error"][k], str) and body["error"][k] for k in ("code", "message")), body
    assert "Traceback" not in response.text and 'File "' not in response.text, "a traceback in the answer"
    return None
