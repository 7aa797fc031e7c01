"""ALEXNET_MODEL_PRECISION / ALEXNET_RUNTIME / ALEXNET_INFERENCE_WORKERS: the service serves the
version's int8 model (or, with OpenVINO installed, bf16) when asked, and runs several batches at
once when asked, says so, and answers what that model computes offline."""

from __future__ import annotations

import importlib.util

import httpx
import numpy as np
import onnxruntime as ort
import pytest

from model_store.manifest import INT8_MODEL_FILE, MANIFEST_FILE
from model_store.preprocessing import decode_image, resize_center_crop
from model_store.store import load_version, publish_version
from service.parallelism import available_cpus
from training.evaluate import onnx_logits_fn, predict_probabilities
from training.index import gallery_images


def served_and_offline(url, tiny_model, store_root, precision: str, per_class: int):
    """(probabilities /classify served, ONNX Runtime's offline 10-crop probabilities with the
    version's ``precision`` model) for test images of the tiny model's classes."""
    version = load_version(store_root, tiny_model.name)
    pre = version.preprocessor()
    session = ort.InferenceSession(str(version.model_file(precision)), providers=["CPUExecutionProvider"])
    images = gallery_images(tiny_model.data_root, "test30", tiny_model.classes, per_class=per_class)
    squares = np.stack([resize_center_crop(decode_image(path), pre.resize) for _, path in images])
    offline = predict_probabilities(onnx_logits_fn(session), squares, pre, "ten_crop")
    for (_, path), expected in zip(images, offline, strict=True):
        response = httpx.post(f"{url}/classify", files={"files": (path.name, path.read_bytes(), "image/jpeg")})
        assert response.status_code == 200, response.text
        predictions = response.json()["results"][0]["predictions"]
        yield np.array([p["probability"] for p in sorted(predictions, key=lambda p: p["index"])]), expected


def test_int8_is_served_and_equals_the_offline_int8_model(tiny_model, private_store, start_service) -> None:
    server = start_service(private_store, model_precision="int8")
    ready = httpx.get(f"{server.url}/readyz").json()
    assert ready["precision"] == "int8" and ready["provider"] == "CPUExecutionProvider"
    assert httpx.get(f"{server.url}/v1/models").json()["models"][0]["precision"] == "int8"

    for served, expected in served_and_offline(server.url, tiny_model, private_store, "int8", per_class=1):
        np.testing.assert_allclose(served, expected, rtol=0, atol=1e-4)


def test_two_inference_workers_split_ten_crops_and_answer_as_offline(tiny_model, private_store, start_service) -> None:
    server = start_service(private_store, inference_workers=2, batch_max_wait_ms=0)
    ready = httpx.get(f"{server.url}/readyz").json()
    assert ready["inference_workers"] == 2 and ready["threads_per_run"] == max(1, available_cpus() // 2)
    for served, expected in served_and_offline(server.url, tiny_model, private_store, "fp32", per_class=1):
        np.testing.assert_allclose(served, expected, rtol=0, atol=1e-4)  # two shares of five crops, joined in order


def test_a_version_without_int8_refuses_to_start_with_the_reason(tiny_model, private_store, start_service) -> None:
    source = load_version(private_store, tiny_model.name)
    files = {n: source.path / n for n in source.manifest.files if n not in (INT8_MODEL_FILE, MANIFEST_FILE)}
    publish_version(private_store, source.manifest, files)  # the new latest has no int8 model
    with pytest.raises(RuntimeError, match="has only fp32"):
        start_service(private_store, model_precision="int8", timeout=60)


def test_bf16_needs_openvino(private_store, start_service) -> None:
    with pytest.raises(RuntimeError, match="bf16 needs runtime=openvino"):
        start_service(private_store, model_precision="bf16", timeout=60)


@pytest.mark.skipif(importlib.util.find_spec("openvino") is None, reason="openvino not installed (extra: openvino)")
@pytest.mark.parametrize("precision", ["fp32", "bf16", "int8"])
def test_openvino_runtime_serves_the_same_labels(tiny_model, private_store, start_service, precision) -> None:
    # fp32 on two workers: each thread its own OpenVINO infer request
    server = start_service(private_store, runtime="openvino", model_precision=precision,
                           inference_workers=2 if precision == "fp32" else 1)  # fmt: skip
    ready = httpx.get(f"{server.url}/readyz").json()
    assert ready["precision"] == precision and ready["provider"].startswith("OpenVINO")
    for served, expected in served_and_offline(server.url, tiny_model, private_store, "fp32", per_class=2):
        np.testing.assert_allclose(served, expected, atol=0.1 if precision != "fp32" else 1e-3)
