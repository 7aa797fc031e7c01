"""From a finished training run to a served model: evaluate on the test split (centre crop and
10-crop), export to ONNX, check ONNX Runtime against PyTorch on real test images, publish the
version into the model store and build its gallery index."""

from __future__ import annotations

import json
import logging
import os
import platform
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from model_store.manifest import (
    BF16_MODEL_FILE,
    BF16_PARITY_METRIC,
    INT8_MODEL_FILE,
    MEAN_FILE,
    METRICS_FILE,
    MODEL_FILE,
    Manifest,
    PreprocessingSpec,
)
from model_store.preprocessing import Preprocessor, Tta
from model_store.store import publish_version
from training.config import TrainConfig
from training.data import TEST_SPLIT_OF, ImageFolder, load_squares
from training.evaluate import EvalResult, evaluate, torch_logits_fn
from training.export import check_parity, check_recorded_logits, export_onnx
from training.model import AlexNet
from training.progress import progress
from training.quantize import AGREEMENT_IMAGES, CALIBRATION_IMAGES, agreement, quantize_int8
from training.train import CHECKPOINT_BEST, CURVES, read_metrics

log = logging.getLogger(__name__)
PARITY_IMAGES = 8
PAPER_RECIPE = {
    "optimizer": "SGD",
    "batch_size": 128,
    "momentum": 0.9,
    "weight_decay": 5e-4,
    "lr": 0.01,
    "lr_schedule": "divide by 10 when validation error stops improving, at most 3 times",
    "augmentation": "random 224 crops of 256x256, horizontal flips, PCA colour noise (alpha ~ N(0, 0.1))",
    "init": "N(0, 0.01) weights; bias 1 in conv2, conv4, conv5, fc6, fc7; 0 elsewhere",
}


def machine_description(device: torch.device) -> dict[str, object]:
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        names = [
            line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines() if line.startswith("model name")
        ]
        cpu = names[0] if names else cpu
    described = {
        "platform": platform.platform(),
        "processor": cpu,
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "device": str(device),
    }
    if device.type == "cuda":
        described["gpu"] = torch.cuda.get_device_name(device)
    return described


@dataclass
class LoadedRun:
    model: AlexNet
    config: TrainConfig
    classes: list[str]
    mean: np.ndarray
    epoch: int

    def preprocessor(self) -> Preprocessor:
        cfg = self.config
        return Preprocessor(mean=self.mean, resize=cfg.resize, crop=cfg.crop, scale=cfg.input_scale)


def load_run(run_dir: Path, checkpoint: str = CHECKPOINT_BEST) -> LoadedRun:
    ckpt = torch.load(Path(run_dir) / checkpoint, map_location="cpu", weights_only=False)
    cfg = TrainConfig(**ckpt["config"])
    model = cfg.network(len(ckpt["classes"]))  # the weights come from the checkpoint
    model.load_state_dict(ckpt["model"])
    return LoadedRun(model.eval(), cfg, ckpt["classes"], np.asarray(ckpt["mean"]), ckpt["state"]["epoch"])


def deviations(cfg: TrainConfig) -> dict[str, object]:
    """Every setting that departs from the paper's recipe, by name."""
    paper = TrainConfig(data=cfg.data, out=cfg.out)
    named = (
        "variant",
        "width",
        "init",
        "input_scale",
        "batch_size",
        "lr",
        "momentum",
        "weight_decay",
        "max_lr_drops",
        "dropout",
        "label_smoothing",
        "lr_schedule",
        "mean_kind",
        "pca_std",
        "resize",
        "crop",
        "warmup_epochs",
        "clip_grad_norm",
        "classes",
    )
    found = {k: getattr(cfg, k) for k in named if getattr(cfg, k) != getattr(paper, k)}
    if cfg.amp in ("bf16", "fp16"):  # forced mixed precision; "auto" (AMP on CUDA only) is in the machine record
        found["amp"] = cfg.amp
    return found


def evaluate_run(
    run: LoadedRun,
    split: str,
    device: torch.device,
    batch_images: int = 16,
    ttas: tuple[Tta, ...] = ("center", "ten_crop"),
) -> dict[str, EvalResult]:
    dataset = ImageFolder(Path(run.config.data))
    samples = [s for s in dataset.samples(split) if s.label < len(run.classes)]
    squares = load_squares(dataset, samples, run.config.resize, Path(run.config.cache))
    labels = np.array([s.label for s in samples])
    pre = run.preprocessor()
    model = run.model.to(device)

    def bar(tta: str):
        return progress(len(samples), f"test {tta} on {split}").update

    results = evaluate(
        torch_logits_fn(model, device), squares, labels, pre, ttas, batch_images=batch_images, progress_factory=bar
    )
    run.model.to("cpu")
    for tta, result in results.items():
        log.info(
            "%s on %s: top-1 error %.4f, top-5 error %.4f, mean per-class accuracy %.4f",
            tta,
            split,
            result.top1_error,
            result.top5_error,
            result.mean_per_class_accuracy,
        )
    return results


def split_crops(run: LoadedRun, split: str, count: int, tta: str = "center") -> np.ndarray:
    """Crops of ``count`` images spread evenly over ``split`` (all classes), preprocessed."""
    dataset = ImageFolder(Path(run.config.data))
    samples = [s for s in dataset.samples(split) if s.label < len(run.classes)]
    step = max(1, len(samples) // count)
    pre = run.preprocessor()
    return np.concatenate([pre.crops(dataset.image_dir / s.path, tta) for s in samples[::step][:count]])


def parity_images(run: LoadedRun, split: str) -> np.ndarray:
    return split_crops(run, split, PARITY_IMAGES)


def publish_run(
    run_dir: Path,
    store_root: Path,
    model_name: str,
    test_split: str | None = None,
    device: str = "auto",
    index: bool = True,
    evaluate_test: bool = True,
    fast_paths: bool = True,
) -> Path:
    """Evaluate, export, check parity, publish (and index the training split); returns the version folder."""
    run = load_run(run_dir)
    split = test_split or TEST_SPLIT_OF.get(run.config.split, run.config.split)
    dev = torch.device(
        "cuda" if device == "auto" and torch.cuda.is_available() else ("cpu" if device == "auto" else device)
    )
    history = read_metrics(run_dir)
    metrics: dict[str, object] = {
        "test_split": split,
        "epochs_trained": len(history),
        "best_epoch": run.epoch,
        "machine": machine_description(dev),
    }
    if history:
        metrics["seconds_per_epoch"] = float(np.mean([r["epoch_seconds"] for r in history]))
        metrics["train_images_per_second"] = float(np.mean([r["images_per_second"] for r in history]))
    if evaluate_test:
        metrics["test"] = {tta: r.as_dict() for tta, r in evaluate_run(run, split, dev).items()}
    return publish_model(
        run, metrics, store_root, model_name, split, index=index, fast_paths=fast_paths, curves=Path(run_dir) / CURVES
    )


def publish_model(
    run: LoadedRun,
    metrics: dict[str, object],
    store_root: Path,
    model_name: str,
    test_split: str,
    *,
    index: bool = True,
    fast_paths: bool = True,
    reference_logits: np.ndarray | None = None,
    curves: Path | None = None,
) -> Path:
    """Export ``run.model`` to ONNX, check ONNX Runtime against PyTorch on real test images (and, when
    ``reference_logits`` are given, against those logits recorded for ``parity_images(run, test_split)``),
    publish the version with ``metrics`` (and ``curves``, the training curves, where that file exists) and
    build its gallery index from the training split."""
    with tempfile.TemporaryDirectory() as tmp:
        tmp_dir = Path(tmp)
        onnx_path = export_onnx(run.model, tmp_dir / MODEL_FILE, run.config.crop)
        parity_crops = parity_images(run, test_split)
        metrics["onnx_parity"] = check_parity(run.model, onnx_path, parity_crops).as_dict()
        if reference_logits is not None:
            metrics["recorded_parity"] = check_recorded_logits(onnx_path, parity_crops, reference_logits)
        files = {CURVES: curves} if curves is not None and curves.is_file() else {}
        if fast_paths:  # the fast CPU paths: OpenVINO's bf16 graph and the int8 model
            bf16_path = export_onnx(run.model, tmp_dir / BF16_MODEL_FILE, run.config.crop, lrn_node=True)
            metrics[BF16_PARITY_METRIC] = check_parity(run.model, bf16_path, parity_crops).as_dict()
            files[BF16_MODEL_FILE] = bf16_path
            calibration = split_crops(run, run.config.split, CALIBRATION_IMAGES)
            int8_path = quantize_int8(onnx_path, tmp_dir / INT8_MODEL_FILE, calibration)
            metrics["int8"] = {"calibration_images": len(calibration), "calibration_split": run.config.split}
            metrics["int8"] |= agreement(onnx_path, int8_path, split_crops(run, test_split, AGREEMENT_IMAGES))
            log.info("int8 vs fp32: %s", metrics["int8"])
            files[INT8_MODEL_FILE] = int8_path
        np.save(tmp_dir / MEAN_FILE, run.mean.astype(np.float32))
        (tmp_dir / METRICS_FILE).write_text(json.dumps(metrics, indent=2))
        files |= {MODEL_FILE: onnx_path, MEAN_FILE: tmp_dir / MEAN_FILE, METRICS_FILE: tmp_dir / METRICS_FILE}
        manifest = Manifest(
            name=model_name,
            labels=run.classes,
            feature_dim=run.model.feature_dim,
            variant=run.config.variant,
            preprocessing=PreprocessingSpec(
                resize=run.config.resize,
                crop=run.config.crop,
                scale=run.config.input_scale,
                mean_kind=run.config.mean_kind,
            ),
            recipe={"paper": PAPER_RECIPE, "deviations": deviations(run.config), "config": run.config.as_dict()},
            metrics=metrics,
        )
        version_dir = publish_version(Path(store_root), manifest, files)
    if index:
        from training.index import build_gallery_index

        build_gallery_index(
            Path(store_root), model_name, version_dir.name, Path(run.config.data), run.config.split, classes=run.classes
        )
    return version_dir
