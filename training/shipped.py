"""The shipped model: a trained AlexNet kept in git as a compact artifact, installed into an empty
model store without training.

``pack`` turns a training run into the artifact (``shipped/<model>/``):
- ``weights.npz.NN``: the parts (each under ``PART_BYTES``) of one compressed ``.npz`` holding every
  weight matrix as int8 with one fp32 scale per output channel (symmetric, absmax / 127), the biases
  in fp32 and the mean subtracted from inputs;
- ``parity.json``: a fixed set of test images and the logits that the shipped (dequantized) weights
  give for them in PyTorch at packing time;
- ``provenance.json``: the command, the machine, the split, the training config, the metrics of the
  trained model and of the model as shipped, and the sha256 of every file and of the whole archive;
- ``curves.png``: the training curves.

``install`` rebuilds the network from the artifact (every checksum verified first), exports ONNX,
checks ONNX Runtime against the recorded logits (ParityError on a mismatch), publishes it as a normal
version with the recorded metrics and builds its gallery index from its training split.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import shlex
from dataclasses import fields
from pathlib import Path

import numpy as np
import torch

from training.config import TrainConfig, default_data_root
from training.pipeline import LoadedRun, evaluate_run, machine_description, parity_images, publish_model
from training.train import CURVES, read_metrics

log = logging.getLogger(__name__)
REPO_ROOT = Path(__file__).resolve().parents[1]
SHIPPED_ROOT = REPO_ROOT / "shipped"
PART_BYTES = 15 * 2**20  # every file of the artifact stays under 16 MiB
WEIGHTS_STEM = "weights.npz"
PROVENANCE_FILE = "provenance.json"
PARITY_FILE = "parity.json"
MEAN_KEY = "__mean__"
SCHEME = "int8 per output channel (symmetric, scale = absmax / 127, fp32 scales); biases and mean fp32"


class ArtifactError(RuntimeError):
    """The shipped artifact is missing, incomplete or does not match its checksums."""


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --- weights: int8 per output channel ----------------------------------------------------------


def quantize_weights(state: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """Each weight tensor (2-d and up) as ``<name>.q`` int8 and ``<name>.scale`` fp32 per output
    channel; every other tensor (the biases) as fp32 under its own name."""
    arrays: dict[str, np.ndarray] = {}
    for name, tensor in state.items():
        values = tensor.detach().float().cpu().numpy()
        if values.ndim < 2:
            arrays[name] = values.astype(np.float32)
            continue
        rows = values.reshape(len(values), -1)
        scale = np.abs(rows).max(axis=1) / 127.0
        scale[scale == 0] = 1.0
        q = np.clip(np.rint(rows / scale[:, None]), -127, 127).astype(np.int8)
        arrays[f"{name}.q"] = q.reshape(values.shape)
        arrays[f"{name}.scale"] = scale.astype(np.float32)
    return arrays


def dequantize_weights(arrays: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    state: dict[str, torch.Tensor] = {}
    for key, values in arrays.items():
        if key == MEAN_KEY or key.endswith(".scale"):
            continue
        if key.endswith(".q"):
            name = key[: -len(".q")]
            scale = arrays[f"{name}.scale"].reshape((-1,) + (1,) * (values.ndim - 1))
            state[name] = torch.from_numpy(values.astype(np.float32) * scale)
        else:
            state[key] = torch.from_numpy(np.asarray(values, dtype=np.float32))
    return state


def _archive_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)  # type: ignore[arg-type]
    return buffer.getvalue()


def write_parts(data: bytes, out_dir: Path, part_bytes: int = PART_BYTES) -> list[dict[str, object]]:
    """``data`` as ``weights.npz.00``, ``.01``, ... of at most ``part_bytes`` each; returns their records."""
    for stale in out_dir.glob(f"{WEIGHTS_STEM}.*"):
        stale.unlink()
    parts = []
    for number, start in enumerate(range(0, len(data), part_bytes)):
        chunk = data[start : start + part_bytes]
        path = out_dir / f"{WEIGHTS_STEM}.{number:02d}"
        path.write_bytes(chunk)
        parts.append({"file": path.name, "bytes": len(chunk), "sha256": sha256_bytes(chunk)})
    return parts


def read_parts(artifact: Path, provenance: dict) -> bytes:
    """The archive, reassembled from its parts after checking each part's and the whole's sha256."""
    chunks = []
    parts = provenance["weights"]["parts"]
    for part in parts:
        path = artifact / part["file"]
        if not path.is_file():
            raise ArtifactError(
                f"{path} is missing (the shipped model has {len(provenance['weights']['parts'])} parts)"
            )
        chunk = path.read_bytes()
        if sha256_bytes(chunk) != part["sha256"]:
            raise ArtifactError(f"{path} does not match its sha256 in {PROVENANCE_FILE}: corrupt or changed")
        chunks.append(chunk)
    data = b"".join(chunks)
    if sha256_bytes(data) != provenance["weights"]["sha256"]:
        raise ArtifactError(f"the reassembled weights of {artifact} do not match their sha256")
    return data


# --- reading the artifact -----------------------------------------------------------------------


def read_provenance(artifact: Path) -> dict:
    path = Path(artifact) / PROVENANCE_FILE
    if not path.is_file():
        raise ArtifactError(f"no shipped model at {artifact} ({PROVENANCE_FILE} is missing)")
    return json.loads(path.read_text())


def load_shipped(artifact: Path, data_root: str | None = None) -> tuple[LoadedRun, dict, np.ndarray]:
    """The shipped model as a LoadedRun (dequantized weights, eval mode), its provenance and the
    logits recorded for its parity images. ``data_root``: where the dataset is here (default: the
    ALEXNET_DATA / ../shared default), not where it was when the model was trained."""
    artifact = Path(artifact)
    provenance = read_provenance(artifact)
    with np.load(io.BytesIO(read_parts(artifact, provenance))) as archive:
        arrays = {key: archive[key] for key in archive.files}
    known = {f.name for f in fields(TrainConfig)}
    config = TrainConfig(**{k: v for k, v in provenance["config"].items() if k in known})
    config.data = data_root or default_data_root()
    classes = provenance["classes"]
    model = config.network(len(classes))
    model.load_state_dict(dequantize_weights(arrays))
    run = LoadedRun(model.eval(), config, classes, arrays[MEAN_KEY], provenance["best_epoch"])
    parity_bytes = (artifact / PARITY_FILE).read_bytes()
    if sha256_bytes(parity_bytes) != provenance["parity_sha256"]:
        raise ArtifactError(f"{artifact / PARITY_FILE} does not match its sha256 in {PROVENANCE_FILE}")
    return run, provenance, np.asarray(json.loads(parity_bytes)["logits"], dtype=np.float32)


# --- packing and installing ---------------------------------------------------------------------


def shipped_logits(run: LoadedRun, split: str) -> np.ndarray:
    with torch.no_grad():
        logits, _ = run.model.eval()(torch.from_numpy(parity_images(run, split)))
    return logits.numpy()


def train_command(cfg: TrainConfig) -> str:
    """The ``alexnet train`` command line that gives ``cfg``: every option that differs from its default."""
    default = TrainConfig(data=cfg.data)
    flags = []
    for f in fields(TrainConfig):
        value = getattr(cfg, f.name)
        if f.name in ("data", "cache", "resume") or value == getattr(default, f.name):
            continue
        flag = "--" + f.name.replace("_", "-")
        flags.append(flag if isinstance(value, bool) else f"{flag} {shlex.quote(str(value))}")
    return " ".join(["alexnet train", *flags])


def pack(
    run: LoadedRun,
    run_dir: Path,
    out_dir: Path,
    evaluate_test: bool = True,
    part_bytes: int = PART_BYTES,
    notes: str = "",
) -> dict:
    """Write the artifact of ``run`` (trained at ``run_dir``) to ``out_dir``; returns the provenance."""
    from training.data import TEST_SPLIT_OF

    out_dir.mkdir(parents=True, exist_ok=True)
    split = TEST_SPLIT_OF.get(run.config.split, run.config.split)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")  # the evaluation; parity logits on the CPU
    arrays = quantize_weights(run.model.state_dict())
    arrays[MEAN_KEY] = np.asarray(run.mean, dtype=np.float32)
    data = _archive_bytes(arrays)
    model = run.config.network(len(run.classes))
    model.load_state_dict(dequantize_weights(arrays))
    shipped = LoadedRun(model.eval(), run.config, run.classes, run.mean, run.epoch)
    metrics: dict[str, object] = {"test_split": split}
    if evaluate_test:  # the trained model with the centre crop only: what int8 costs, in a tenth of the time
        metrics["shipped"] = {t: r.as_dict() for t, r in evaluate_run(shipped, split, device).items()}
        trained = evaluate_run(run, split, device, ttas=("center",))
        metrics["trained"] = {t: r.as_dict() for t, r in trained.items()}
    logits = shipped_logits(shipped, split)
    history = read_metrics(run_dir)
    provenance = {
        "model": "AlexNet (Krizhevsky, Sutskever & Hinton 2012)",
        "command": train_command(run.config),
        "notes": notes,
        "machine": machine_description(device),
        "trained_on": {"split": run.config.split, "test_split": split},
        "epochs_trained": len(history),
        "best_epoch": run.epoch,
        "seconds_training": float(sum(r["epoch_seconds"] for r in history)),
        "train_images_per_second": float(np.mean([r["images_per_second"] for r in history])) if history else None,
        "metrics": metrics,
        "config": run.config.as_dict(),
        "classes": run.classes,
        "weights": {"scheme": SCHEME, "bytes": len(data), "sha256": sha256_bytes(data), "parts": []},
    }
    provenance["weights"]["parts"] = write_parts(data, out_dir, part_bytes)  # type: ignore[index]
    parity = {"split": split, "images": len(logits), "logits": logits.round(6).tolist()}
    (out_dir / PARITY_FILE).write_text(json.dumps(parity))
    provenance["parity_sha256"] = sha256_bytes((out_dir / PARITY_FILE).read_bytes())
    curves = Path(run_dir) / CURVES
    if curves.is_file():
        (out_dir / CURVES).write_bytes(curves.read_bytes())
        provenance["curves_sha256"] = sha256_bytes(curves.read_bytes())
    (out_dir / PROVENANCE_FILE).write_text(json.dumps(provenance, indent=2) + "\n")
    log.info("packed %s: %.1f MB in %d parts", out_dir, len(data) / 1e6, len(provenance["weights"]["parts"]))
    return provenance


def install(
    artifact: Path,
    store_root: Path,
    model_name: str,
    data_root: str | None = None,
    index: bool = True,
    fast_paths: bool = False,
) -> Path:
    """Publish the shipped model into ``store_root`` as a new version of ``model_name`` (with its
    gallery index unless ``index`` is False); returns the version folder."""
    artifact = Path(artifact)
    run, provenance, recorded = load_shipped(artifact, data_root)
    split = provenance["trained_on"]["test_split"]
    shipped_metrics = provenance["metrics"]
    metrics: dict[str, object] = {
        "test_split": split,
        "epochs_trained": provenance["epochs_trained"],
        "best_epoch": provenance["best_epoch"],
        "machine": provenance["machine"],
        "seconds_per_epoch": provenance["seconds_training"] / max(1, provenance["epochs_trained"]),
        "train_images_per_second": provenance["train_images_per_second"],
        "source": f"shipped artifact {artifact.name} ({provenance['weights']['scheme']})",
        "weights_sha256": provenance["weights"]["sha256"],
    }
    if "shipped" in shipped_metrics:
        metrics["test"] = shipped_metrics["shipped"]
        metrics["test_before_quantization"] = shipped_metrics.get("trained")
    curves = artifact / CURVES
    if curves.is_file() and sha256_bytes(curves.read_bytes()) != provenance.get("curves_sha256"):
        raise ArtifactError(f"{curves} does not match its sha256 in {PROVENANCE_FILE}")
    return publish_model(
        run,
        metrics,
        store_root,
        model_name,
        split,
        index=index,
        fast_paths=fast_paths,
        reference_logits=recorded,
        curves=curves,
    )
