"""/classify answers exactly what the offline computation gives: the shared preprocessing, an
ONNX Runtime session and the mean of the crops' softmax (training/evaluate.py computes the same)."""

from __future__ import annotations

import httpx
import numpy as np
import onnxruntime as ort
import pytest

from model_store.preprocessing import average_crop_probabilities
from model_store.store import load_version
from training.index import gallery_images


@pytest.mark.parametrize("tta", ["ten_crop", "center"])
def test_classify_equals_the_offline_computation(client: httpx.Client, live_service, tta: str) -> None:
    model = load_version(live_service.model.store_root, live_service.model.name)
    preprocessor = model.preprocessor()
    session = ort.InferenceSession(str(model.model_path), providers=["CPUExecutionProvider"])
    test_images = gallery_images(live_service.model.data_root, "test30", live_service.model.classes, per_class=1)
    for label, path in test_images:
        crops = preprocessor.crops(path, tta)
        (logits,) = session.run(["logits"], {"images": crops})
        expected = average_crop_probabilities(logits, len(crops))[0]

        files = {"files": (path.name, path.read_bytes(), "image/jpeg")}
        response = client.post("/classify", files=files, data={"tta": tta, "top_k": "5"})
        assert response.status_code == 200, response.text
        predictions = response.json()["results"][0]["predictions"]
        served = np.array([p["probability"] for p in sorted(predictions, key=lambda p: p["index"])])
        np.testing.assert_allclose(served, expected, rtol=0, atol=1e-5, err_msg=f"{label}/{path.name}")
        assert [p["label"] for p in predictions] == [model.manifest.labels[p["index"]] for p in predictions]
        assert predictions[0]["index"] == int(np.argmax(expected))
