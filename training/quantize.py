"""The int8 model of a version: static post-training quantization of the exported fp32 ONNX model.

ONNX Runtime's quantizer calibrates activation ranges on real training images (centre crops through
the shared preprocessing), then writes a QDQ model: int8 weights per output channel, uint8
activations, LRN left in float between dequantize/quantize pairs. Any runtime that reads QDQ ONNX
can run it as int8 (ONNX Runtime, OpenVINO). Built at publish time beside ``model.onnx``; whether
its labels agree with fp32 is measured there (``agreement``) and, on the whole test split, by
``benchmarks/bench_cpu_paths.py``.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process

from model_store.manifest import OnnxSignature
from model_store.postprocessing import average_crop_probabilities
from service.runtime import open_session

log = logging.getLogger(__name__)
CALIBRATION_BATCH = 16
CALIBRATION_IMAGES = 256  # centre crops of training images, spread over the classes
AGREEMENT_IMAGES = 128


class _Batches(CalibrationDataReader):
    def __init__(self, input_name: str, crops: np.ndarray):
        self._batches: Iterator[np.ndarray] = iter(np.array_split(crops, max(1, len(crops) // CALIBRATION_BATCH)))
        self._input = input_name

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self._batches, None)
        return None if batch is None else {self._input: np.ascontiguousarray(batch, dtype=np.float32)}


def quantize_int8(fp32_path: Path, out_path: Path, calibration_crops: np.ndarray) -> Path:
    """Write the int8 QDQ model of ``fp32_path`` to ``out_path``, calibrated on ``calibration_crops``
    (float32 [N,3,H,W], preprocessed like the model's inputs; a few hundred real images suffice)."""
    if len(calibration_crops) == 0:
        raise ValueError("quantization needs calibration images")
    out_path = Path(out_path)
    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
        quantize_static(
            str(prepared),
            str(out_path),
            _Batches(OnnxSignature().input, calibration_crops),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
        )
    log.info("int8 model: %s (%.1f MB)", out_path, out_path.stat().st_size / 1e6)
    return out_path


def agreement(fp32_path: Path, int8_path: Path, crops: np.ndarray, crops_per_image: int = 1) -> dict[str, float]:
    """Top-1 agreement of the two models on ``crops`` (images of ``crops_per_image`` crops each,
    softmax averaged per image) and the fc7 features' mean relative error."""
    sig = OnnxSignature()
    outputs = {}
    for name, path in (("fp32", fp32_path), ("int8", int8_path)):
        session = open_session(path)
        outputs[name] = session.run([sig.logits, sig.features], {sig.input: crops})
    (logits32, feats32), (logits8, feats8) = outputs["fp32"], outputs["int8"]
    labels32 = average_crop_probabilities(logits32, crops_per_image).argmax(1)
    labels8 = average_crop_probabilities(logits8, crops_per_image).argmax(1)
    rel = np.linalg.norm(feats8 - feats32, axis=1) / np.maximum(np.linalg.norm(feats32, axis=1), 1e-12)
    return {
        "images": len(labels32),
        "top1_agreement": float((labels32 == labels8).mean()),
        "features_mean_rel_error": float(rel.mean()),
    }


def publish_int8_version(store_root: Path, model_name: str, version: str, data_root: Path | None = None) -> Path:
    """Publish a new version: ``version``'s files and gallery plus its int8 model.

    For versions published before int8 models were built at publish time (or with ``--no-int8``).
    Calibration uses the version's training split (from its recipe; ``data_root`` overrides where
    the dataset is). The gallery is copied as it is: run this while no service changes it.
    """
    from model_store.gallery import GALLERY_FILE
    from model_store.manifest import INT8_MODEL_FILE, MANIFEST_FILE, METRICS_FILE
    from model_store.store import INDEX_DIR, load_version, publish_version
    from training.index import gallery_images

    source = load_version(Path(store_root), model_name, version)
    config = source.manifest.recipe.get("config", {})
    root = Path(data_root or config.get("data", ""))
    split = config.get("split", "train30")
    if not (root / "splits" / f"{split}.txt").is_file():
        raise FileNotFoundError(f"calibration images: no split file {root}/splits/{split}.txt (pass --data)")
    classes = source.manifest.labels
    paths = [p for _, p in gallery_images(root, split, classes=classes)]
    step = max(1, len(paths) // CALIBRATION_IMAGES)
    pre = source.preprocessor()
    calibration = np.concatenate([pre.crops(p, "center") for p in paths[::step][:CALIBRATION_IMAGES]])
    held_out = np.concatenate([pre.crops(p, "center") for p in paths[step // 2 :: step][:AGREEMENT_IMAGES]])
    with tempfile.TemporaryDirectory() as tmp:
        int8_path = quantize_int8(source.model_path, Path(tmp) / INT8_MODEL_FILE, calibration)
        metrics = dict(source.manifest.metrics)
        metrics["int8"] = {"calibration_images": len(calibration), "calibration_split": split}
        metrics["int8"] |= agreement(source.model_path, int8_path, held_out)
        metrics["int8"]["agreement_images"] = f"{split}, images between the calibration ones"
        metrics["derived_from"] = source.manifest.version
        files = {name: source.path / name for name in source.manifest.files if name != MANIFEST_FILE}
        files[INT8_MODEL_FILE] = int8_path
        if METRICS_FILE in files:  # the metrics file says what the manifest says
            files[METRICS_FILE] = Path(tmp) / METRICS_FILE
            files[METRICS_FILE].write_text(json.dumps(metrics, indent=2))
        manifest = source.manifest.model_copy(update={"metrics": metrics})
        version_dir = publish_version(Path(store_root), manifest, files)
    if (source.index_dir / GALLERY_FILE).is_file():
        staging = version_dir / f".{INDEX_DIR}-copy"
        shutil.copytree(source.index_dir, staging)
        os.rename(staging, version_dir / INDEX_DIR)
    log.info("published %s with an int8 model (from %s): %s", version_dir.name, version, metrics["int8"])
    return version_dir
