"""The shipped model: int8 packing, the artifact's checksums and parity logits, and installing it into
an empty store (ONNX export, parity against the recorded logits, publishing), on a real tiny run and on
the artifact committed under shipped/."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from image_helpers import CALTECH_ROOT
from training_helpers import TEST_WIDTH, small_config

from alexnet_cli.main import main as alexnet_cli
from model_store.store import list_versions, load_version
from training.export import ParityError
from training.model import build_alexnet
from training.pipeline import load_run
from training.shipped import (
    PARITY_FILE,
    PART_BYTES,
    PROVENANCE_FILE,
    SHIPPED_ROOT,
    ArtifactError,
    dequantize_weights,
    install,
    pack,
    quantize_weights,
    read_provenance,
)
from training.train import train

pytestmark = pytest.mark.skipif(not (CALTECH_ROOT / "splits").is_dir(), reason=f"Caltech-101 not at {CALTECH_ROOT}")
SHIPPED = SHIPPED_ROOT / "alexnet-caltech101"


def test_int8_per_channel_weights_round_trip_within_half_a_step():
    model = build_alexnet(7, "grouped", init="kaiming", width=TEST_WIDTH)
    with torch.no_grad():
        model.classifier.weight[3].zero_()  # an all-zero output channel must not divide by zero
        model.classifier.bias.normal_()
    state = model.state_dict()
    arrays = quantize_weights(state)
    conv1_channels = model.features[0].out_channels  # one scale per output channel
    assert arrays["features.0.weight.q"].dtype == np.int8 and arrays["features.0.weight.scale"].shape == (
        conv1_channels,
    )
    restored = dequantize_weights(arrays)
    assert restored.keys() == state.keys()
    for name, tensor in state.items():
        if tensor.ndim < 2:
            assert torch.equal(restored[name], tensor), name  # biases are kept exactly
            continue
        step = torch.from_numpy(arrays[f"{name}.scale"]).reshape((-1,) + (1,) * (tensor.ndim - 1))
        assert (restored[name] - tensor).abs().le(step / 2 + 1e-7).all(), name
        assert restored[name].abs().amax().item() == pytest.approx(tensor.abs().amax().item(), rel=1e-6)
    assert torch.count_nonzero(restored["classifier.weight"][3]) == 0


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    """A real few-step run on 3 classes."""
    work = tmp_path_factory.mktemp("ship")
    cfg = small_config(work, init="kaiming", input_scale=1 / 64)
    return train(cfg)


@pytest.fixture(scope="module")
def tiny_artifact(tiny_run) -> Path:
    """The tiny run packed in parts of 1 MiB (so the reassembly is exercised)."""
    pack(load_run(tiny_run), tiny_run, tiny_run.parent / "artifact", evaluate_test=False, part_bytes=2**20)
    return tiny_run.parent / "artifact"


def test_the_ship_command_packs_a_run(tiny_run, tmp_path, capsys):
    assert alexnet_cli(["ship", "--run", str(tiny_run), "--out", str(tmp_path / "a"), "--skip-eval"]) == 0
    assert "packed" in capsys.readouterr().out
    provenance = read_provenance(tmp_path / "a")
    parts = provenance["weights"]["parts"]
    # parts of at most PART_BYTES (15 MiB: the paper's width is ~55 MB of int8; several parts: the next test)
    assert len(parts) == -(-provenance["weights"]["bytes"] // PART_BYTES) >= 1
    assert all((tmp_path / "a" / part["file"]).stat().st_size <= PART_BYTES for part in parts)


def test_pack_writes_parts_under_the_limit_and_a_provenance(tiny_artifact):
    provenance = read_provenance(tiny_artifact)
    parts = sorted(tiny_artifact.glob("weights.npz.*"))
    assert len(parts) == len(provenance["weights"]["parts"]) > 1
    assert all(p.stat().st_size <= 2**20 for p in parts)
    assert sum(p.stat().st_size for p in parts) == provenance["weights"]["bytes"]
    assert provenance["trained_on"] == {"split": "train30", "test_split": "test30"}
    assert provenance["command"].startswith("alexnet train ") and "--init kaiming" in provenance["command"]
    assert "--classes 3" in provenance["command"] and "--data" not in provenance["command"]
    assert provenance["machine"]["processor"] and len(provenance["classes"]) == 3
    parity = json.loads((tiny_artifact / PARITY_FILE).read_text())
    assert np.asarray(parity["logits"]).shape == (parity["images"], 3)


def test_install_publishes_a_version_that_reproduces_the_recorded_logits(tiny_artifact, tmp_path):
    version_dir = install(tiny_artifact, tmp_path / "store", "tiny", str(CALTECH_ROOT), index=False)
    version = load_version(tmp_path / "store", "tiny")  # verifies every checksum
    assert version.path == version_dir and version.manifest.labels == read_provenance(tiny_artifact)["classes"]
    metrics = version.manifest.metrics
    assert metrics["recorded_parity"]["rel_logits"] < 1e-4 and metrics["recorded_parity"]["top1_agreement"] == 1.0
    assert metrics["weights_sha256"] == read_provenance(tiny_artifact)["weights"]["sha256"]
    assert version.manifest.recipe["deviations"]["init"] == "kaiming"


def _copy(artifact: Path, target: Path) -> Path:
    target.mkdir()
    for path in artifact.iterdir():
        (target / path.name).write_bytes(path.read_bytes())
    return target


def test_a_corrupt_or_missing_part_is_refused_before_anything_is_published(tiny_artifact, tmp_path):
    corrupt = _copy(tiny_artifact, tmp_path / "corrupt")
    part = corrupt / "weights.npz.01"
    data = bytearray(part.read_bytes())
    data[100] ^= 0xFF
    part.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match=r"weights\.npz\.01 does not match its sha256"):
        install(corrupt, tmp_path / "store", "tiny", str(CALTECH_ROOT), index=False)
    part.unlink()
    with pytest.raises(ArtifactError, match=r"weights\.npz\.01 is missing"):
        install(corrupt, tmp_path / "store", "tiny", str(CALTECH_ROOT), index=False)
    assert list_versions(tmp_path / "store", "tiny") == []


def test_parity_logits_changed_without_their_checksum_are_refused(tiny_artifact, tmp_path):
    changed = _copy(tiny_artifact, tmp_path / "changed")
    parity = json.loads((changed / PARITY_FILE).read_text())
    parity["logits"][0][0] += 1.0
    (changed / PARITY_FILE).write_text(json.dumps(parity))
    with pytest.raises(ArtifactError, match=r"parity\.json does not match its sha256"):
        install(changed, tmp_path / "store", "tiny", str(CALTECH_ROOT), index=False)
    assert list_versions(tmp_path / "store", "tiny") == []


def test_logits_that_do_not_match_fail_loudly_and_publish_nothing(tiny_artifact, tmp_path):
    """A rebuilt network that gives other logits than were recorded at training time (here: the
    recorded logits changed, with a matching checksum, as a changed recipe would give)."""
    import hashlib

    changed = _copy(tiny_artifact, tmp_path / "changed")
    parity = json.loads((changed / PARITY_FILE).read_text())
    parity["logits"] = (np.asarray(parity["logits"]) * 1.01 + 0.5).tolist()
    (changed / PARITY_FILE).write_text(json.dumps(parity))
    provenance = read_provenance(changed)
    provenance["parity_sha256"] = hashlib.sha256((changed / PARITY_FILE).read_bytes()).hexdigest()
    (changed / PROVENANCE_FILE).write_text(json.dumps(provenance))
    with pytest.raises(ParityError, match="recorded at training time"):
        install(changed, tmp_path / "store", "tiny", str(CALTECH_ROOT), index=False)
    assert list_versions(tmp_path / "store", "tiny") == []
    code = alexnet_cli(["install", "--artifact", str(changed), "--store-root", str(tmp_path / "s2"), "--no-index"])
    assert code == 2  # one clear line on the command line, not a traceback


@pytest.mark.skipif(not SHIPPED.is_dir(), reason="no shipped model committed yet")
def test_the_committed_shipped_model_is_intact_and_within_the_limits(tmp_path):
    provenance = read_provenance(SHIPPED)
    files = list(SHIPPED.iterdir())
    assert all(f.stat().st_size < 16 * 2**20 for f in files)
    assert sum(f.stat().st_size for f in files) <= 64 * 10**6
    shipped = provenance["metrics"]["shipped"]
    assert shipped["ten_crop"]["images"] == shipped["center"]["images"] > 1000  # measured on the whole test split
    version_dir = install(SHIPPED, tmp_path / "store", "alexnet-caltech101", str(CALTECH_ROOT), index=False)
    manifest = load_version(tmp_path / "store", "alexnet-caltech101").manifest
    assert manifest.metrics["recorded_parity"]["top1_agreement"] == 1.0 and version_dir.name == "v1"
    assert len(manifest.labels) == 101
    assert "curves.png" in manifest.files  # the training curves travel with the model


def test_build_default_installs_the_shipped_model_with_its_gallery_once(tiny_artifact, tmp_path, capsys):
    shipped_root = tmp_path / "shipped"
    shipped_root.mkdir()
    _copy(tiny_artifact, shipped_root / "tiny")
    args = ["build-default", "--store-root", str(tmp_path / "store"), "--model-name", "tiny"]
    assert alexnet_cli([*args, "--shipped-root", str(shipped_root)]) == 0
    version = load_version(tmp_path / "store", "tiny")
    assert version.manifest.metrics["source"].startswith("shipped artifact tiny")
    gallery = json.loads((version.index_dir / "gallery.json").read_text())
    labels = {item["label"] for item in gallery["items"]}
    assert len(gallery["items"]) == 90  # train30 of 3 classes
    assert labels == set(read_provenance(tiny_artifact)["classes"])  # the training split of its 3 classes
    assert alexnet_cli([*args, "--shipped-root", str(shipped_root)]) == 0
    assert "already published" in capsys.readouterr().out
    assert list_versions(tmp_path / "store", "tiny") == ["v1"]
