"""training.export: ONNX signature with dynamic batch, and the parity check on real Caltech-101 images."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from image_helpers import CALTECH_GRAYSCALE, CALTECH_SAMPLES

from model_store.preprocessing import Preprocessor
from training.export import OPSET, ParityError, check_parity, export_onnx
from training.model import AlexNet, build_alexnet

NUM_CLASSES = 5

# One export for the whole module: AlexNet has ~57M parameters at 5 classes.


@pytest.fixture(scope="module")
def model() -> AlexNet:
    torch.manual_seed(0)
    return build_alexnet(NUM_CLASSES).eval()


@pytest.fixture(scope="module")
def onnx_path(model: AlexNet, tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("export") / "nested" / "alexnet.onnx"
    written = export_onnx(model, target)
    assert written == target and target.is_file()
    return target


@pytest.fixture(scope="module")
def session(onnx_path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    """Real photographs through the project's one preprocessing: centre crops of four images
    (one grayscale) and the ten crops of one, float32 [14,3,224,224]."""
    pre = Preprocessor(mean=np.array([123.7, 116.3, 103.5]))
    sources = [*CALTECH_SAMPLES, CALTECH_GRAYSCALE]
    centre = [pre.crops(path, tta="center") for path in sources]
    batch = np.concatenate([*centre, pre.crops(CALTECH_SAMPLES[1], tta="ten_crop")])
    assert batch.shape == (14, 3, 224, 224) and batch.dtype == np.float32
    return batch


def dims(value_info: onnx.ValueInfoProto) -> list[int | str]:
    return [d.dim_param or d.dim_value for d in value_info.type.tensor_type.shape.dim]


def test_onnx_signature_has_dynamic_batch(onnx_path: Path) -> None:
    proto = onnx.load(str(onnx_path))
    onnx.checker.check_model(proto)
    graph = proto.graph
    initializer_names = {init.name for init in graph.initializer}
    inputs = [i for i in graph.input if i.name not in initializer_names]
    assert [i.name for i in inputs] == ["images"]
    assert [o.name for o in graph.output] == ["logits", "features"]
    image_dims, logit_dims, feature_dims = dims(inputs[0]), dims(graph.output[0]), dims(graph.output[1])
    batch = image_dims[0]
    assert isinstance(batch, str) and batch, "batch dimension must be symbolic"
    assert image_dims == [batch, 3, 224, 224]
    assert logit_dims == [batch, NUM_CLASSES]
    assert feature_dims == [batch, 4096]
    assert {op.domain: op.version for op in proto.opset_import}.get("") == OPSET


@pytest.mark.parametrize("batch", [1, 3])
def test_onnx_runtime_runs_any_batch_and_matches_torch(
    session: ort.InferenceSession, model: AlexNet, images: np.ndarray, batch: int
) -> None:
    x = images[:batch]
    logits, features = session.run(["logits", "features"], {"images": x})
    assert logits.shape == (batch, NUM_CLASSES) and features.shape == (batch, 4096)
    assert (features >= 0).all()
    with torch.no_grad():
        ref_logits, ref_features = model(torch.from_numpy(x))
    np.testing.assert_allclose(logits, ref_logits.numpy(), rtol=1e-4, atol=1e-4 * np.abs(ref_logits.numpy()).max())
    np.testing.assert_allclose(
        features, ref_features.numpy(), rtol=1e-4, atol=1e-4 * np.abs(ref_features.numpy()).max()
    )


def test_batch_rows_are_independent(session: ort.InferenceSession, images: np.ndarray) -> None:
    one = session.run(["logits"], {"images": images[2:3]})[0]
    three = session.run(["logits"], {"images": images[:3]})[0]
    np.testing.assert_allclose(one[0], three[2], rtol=1e-5, atol=1e-5 * np.abs(one).max())


def test_parity_on_real_images(model: AlexNet, onnx_path: Path, images: np.ndarray) -> None:
    report = check_parity(model, onnx_path, images)
    assert report.batch == len(images)
    assert report.rel_logits < 1e-4 and report.rel_features < 1e-4
    assert report.top1_agreement == 1.0
    assert set(report.as_dict()) == {
        "batch",
        "max_abs_logits",
        "max_abs_features",
        "rel_logits",
        "rel_features",
        "top1_agreement",
    }


def test_parity_fails_for_a_different_model(model: AlexNet, onnx_path: Path, images: np.ndarray) -> None:
    changed = copy.deepcopy(model)
    with torch.no_grad():
        fc7 = changed.fc_layers()[1]
        fc7.weight.add_(torch.randn_like(fc7.weight) * 0.01)
    few = images[:3]  # any image shows the change
    with pytest.raises(ParityError, match="differs from PyTorch"):
        check_parity(changed, onnx_path, few)
    # the tolerance is what decides: a loose enough one lets the same pair through
    report = check_parity(changed, onnx_path, few, rtol=1e6)
    assert report.rel_features > 1e-3
