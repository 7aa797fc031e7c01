"""ALEXNET_JPEG_DRAFT (on by default): a large photo is decoded at reduced scale, yet /classify
reports its real upright size and nearly the probabilities of a full decode."""

from __future__ import annotations

import io

import httpx
import numpy as np
from image_helpers import CALTECH_SAMPLES
from PIL import Image

from model_store.store import load_version
from training.evaluate import onnx_logits_fn, predict_probabilities


def test_large_rotated_photo_reports_its_size_and_classifies_like_a_full_decode(client: httpx.Client, live_service):
    photo = Image.open(CALTECH_SAMPLES[0]).convert("RGB").resize((2400, 1800), Image.Resampling.BICUBIC)
    exif = Image.Exif()
    exif[0x0112] = 6  # displayed rotated 90 degrees clockwise: 1800 x 2400
    buffer = io.BytesIO()
    photo.save(buffer, "JPEG", quality=90, exif=exif.tobytes())
    response = client.post("/classify", files={"files": ("photo.jpg", buffer.getvalue(), "image/jpeg")})
    assert response.status_code == 200, response.text
    result = response.json()["results"][0]
    assert (result["width"], result["height"]) == (1800, 2400)

    import onnxruntime as ort

    version = load_version(live_service.model.store_root, live_service.model.name)
    pre = version.preprocessor()  # jpeg_draft off: the full decode, as in training
    session = ort.InferenceSession(str(version.model_path), providers=["CPUExecutionProvider"])
    full = predict_probabilities(onnx_logits_fn(session), pre.square(buffer.getvalue())[None], pre, "ten_crop")[0]
    served = {p["index"]: p["probability"] for p in result["predictions"]}
    assert max(served, key=served.get) == int(np.argmax(full))
    for index, probability in served.items():
        assert abs(probability - full[index]) < 0.05
