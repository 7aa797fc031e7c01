"""/classify answers what the offline evaluation computes: training/evaluate.py's
``predict_probabilities`` (the shared preprocessing, the published ONNX model in ONNX Runtime and
the mean of the crops' softmax) on the same Caltech-101 test images. One preprocessing, two callers."""

from __future__ import annotations

import httpx
import numpy as np
import onnxruntime as ort
import pytest

from model_store.preprocessing import decode_image, resize_center_crop
from model_store.store import load_version
from training.evaluate import onnx_logits_fn, predict_probabilities
from training.index import gallery_images


@pytest.mark.parametrize("tta", ["ten_crop", "center"])
def test_classify_equals_the_offline_evaluation(client: httpx.Client, live_service, tta: str) -> None:
    model = load_version(live_service.model.store_root, live_service.model.name)
    preprocessor = model.preprocessor()
    session = ort.InferenceSession(str(model.model_path), providers=["CPUExecutionProvider"])
    test_images = gallery_images(live_service.model.data_root, "test30", live_service.model.classes, per_class=1)
    squares = np.stack([resize_center_crop(decode_image(path), preprocessor.resize) for _, path in test_images])
    offline = predict_probabilities(onnx_logits_fn(session), squares, preprocessor, tta)
    assert offline.shape == (len(test_images), len(model.manifest.labels))

    for (label, path), expected in zip(test_images, offline, strict=True):
        files = {"files": (path.name, path.read_bytes(), "image/jpeg")}
        response = client.post("/classify", files=files, data={"tta": tta, "top_k": "5"})
        assert response.status_code == 200, response.text
        predictions = response.json()["results"][0]["predictions"]
        served = np.array([p["probability"] for p in sorted(predictions, key=lambda p: p["index"])])
        np.testing.assert_allclose(served, expected, rtol=0, atol=1e-5, err_msg=f"{label}/{path.name}")
        assert [p["label"] for p in predictions] == [model.manifest.labels[p["index"]] for p in predictions]
        assert predictions[0]["index"] == int(np.argmax(expected))


def test_readiness_reports_the_real_runtime_plan(client: httpx.Client, live_service) -> None:
    """(Moved here from test_service_api.py, whose routes now run on the fake model.)"""
    from service.parallelism import available_cpus

    ready = client.get("/readyz").json()
    assert ready["status"] == "ready" and ready["provider"] == "CPUExecutionProvider"
    # one run at a time, on as many ONNX Runtime threads as this process may use CPUs
    assert ready["inference_workers"] == 1 and ready["threads_per_run"] == available_cpus()
    assert ready["decode_threads"] == max(1, available_cpus() // 8)  # beside the model on the CPU
    (info,) = client.get("/v1/models").json()["models"]
    assert info["name"] == live_service.model.name and info["manifest"]["labels"] == list(live_service.model.classes)
