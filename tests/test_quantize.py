"""The fast CPU paths' models in the store: model.int8.onnx (training/quantize.py) and
model.bf16.onnx (LRN as one node), built at publish time, verified like any file, close to fp32;
int8 addable to an older version with `alexnet quantize`."""

from __future__ import annotations

import json
import shutil

import numpy as np
import onnxruntime as ort
import pytest

from alexnet_cli.main import main as alexnet_cli
from model_store.manifest import BF16_MODEL_FILE, INT8_MODEL_FILE, MANIFEST_FILE
from model_store.postprocessing import average_crop_probabilities
from model_store.store import StoreError, load_version, publish_version


def test_publish_builds_a_verified_int8_model_close_to_fp32(tiny_model) -> None:
    version = load_version(tiny_model.store_root, tiny_model.name)  # verifies every checksum, int8 included
    assert version.precisions == ["fp32", "int8", "bf16"]
    assert INT8_MODEL_FILE in version.manifest.files and BF16_MODEL_FILE in version.manifest.files
    assert version.manifest.metrics["bf16_graph_parity"]["rel_logits"] < 1e-3
    assert version.model_file("int8").stat().st_size < version.model_path.stat().st_size / 2
    report = version.manifest.metrics["int8"]
    assert report["images"] > 0 and report["top1_agreement"] >= 0.9
    assert report["features_mean_rel_error"] < 0.2

    pre = version.preprocessor()
    faces = sorted((tiny_model.data_root / "images" / "Faces").glob("*.jpg"))[:4]
    crops = np.concatenate([pre.crops(p, "ten_crop") for p in faces])
    out = {}
    for precision in version.precisions:  # ONNX Runtime runs all three graphs (bf16's in fp32)
        session = ort.InferenceSession(str(version.model_file(precision)), providers=["CPUExecutionProvider"])
        logits, features = session.run(["logits", "features"], {"images": crops})
        assert logits.shape == (len(crops), len(tiny_model.classes)) and features.shape == (
            len(crops),
            version.manifest.feature_dim,
        )
        out[precision] = average_crop_probabilities(logits, 10)
    np.testing.assert_allclose(out["int8"], out["fp32"], atol=0.15)
    np.testing.assert_allclose(out["bf16"], out["fp32"], atol=1e-5)  # the same function, another graph


def test_unknown_or_missing_precision_is_a_clear_error(tiny_model, tmp_path) -> None:
    version = load_version(tiny_model.store_root, tiny_model.name)
    with pytest.raises(StoreError, match="unknown precision"):
        version.model_file("fp8")
    files = {n: version.path / n for n in version.manifest.files if n not in (INT8_MODEL_FILE, MANIFEST_FILE)}
    bare = publish_version(tmp_path, version.manifest, files)
    with pytest.raises(StoreError, match="has no int8 model"):
        load_version(tmp_path, tiny_model.name, bare.name).model_file("int8")


def test_quantize_command_publishes_a_new_version_with_int8_and_the_gallery(tiny_model, private_store, capsys) -> None:
    source = load_version(private_store, tiny_model.name)
    files = {n: source.path / n for n in source.manifest.files if n not in (INT8_MODEL_FILE, MANIFEST_FILE)}
    bare = publish_version(private_store, source.manifest, files)  # a version without int8, as before
    shutil.copytree(source.index_dir, bare / "index")
    code = alexnet_cli(
        ["quantize", "--store-root", str(private_store), "--model-name", tiny_model.name, "--version", bare.name,
         "--data", str(tiny_model.data_root)]
    )  # fmt: skip
    assert code == 0
    assert "published" in capsys.readouterr().out
    new = load_version(private_store, tiny_model.name)
    assert int(new.manifest.version[1:]) == int(bare.name[1:]) + 1
    assert new.precisions == ["fp32", "int8", "bf16"]
    assert new.manifest.metrics["derived_from"] == bare.name
    assert json.loads((new.path / "metrics.json").read_text())["int8"] == new.manifest.metrics["int8"]
    assert sorted(p.name for p in (new.index_dir).iterdir()) == sorted(p.name for p in source.index_dir.iterdir())
    assert new.model_path.read_bytes() == source.model_path.read_bytes()
