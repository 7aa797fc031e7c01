"""Training: splits, colour statistics, augmentation, real optimisation steps, resume, and the
one command from a run to a published version."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from image_helpers import CALTECH_ROOT
from training_helpers import TEST_WIDTH, fewer_test_images, small_config

from alexnet_cli.main import main as alexnet_cli
from model_store.store import load_version
from training.data import ColorStats, ImageFolder, augment_batch, color_stats, load_squares, stratified_holdout
from training.model import build_alexnet
from training.train import load_data, setup_runtime, train, train_one_epoch

pytestmark = pytest.mark.skipif(not (CALTECH_ROOT / "splits").is_dir(), reason=f"Caltech-101 not at {CALTECH_ROOT}")


def test_split_files_and_stratified_holdout():
    dataset = ImageFolder(CALTECH_ROOT)
    classes = dataset.classes()
    assert len(classes) == 101
    train30 = dataset.samples("train30")
    per_class = np.bincount([s.label for s in train30], minlength=101)
    assert per_class.max() == 30 and per_class.min() > 0
    keep, held = stratified_holdout(train30, 0.1, seed=0)
    assert {s.path for s in keep}.isdisjoint({s.path for s in held})
    assert len(keep) + len(held) == len(train30)
    held_per_class = np.bincount([s.label for s in held], minlength=101)
    assert held_per_class[per_class == 30].tolist() == [3] * int((per_class == 30).sum())
    assert stratified_holdout(train30, 0.1, seed=0) == (keep, held)  # deterministic


def test_missing_dataset_is_a_clear_error(tmp_path):
    from training.data import DatasetError

    with pytest.raises(DatasetError, match="dataset not found"):
        ImageFolder(tmp_path / "nowhere").samples("train30")


def test_color_stats_mean_and_pca_match_numpy():
    rng = np.random.default_rng(0)
    squares = rng.integers(0, 256, size=(20, 8, 8, 3), dtype=np.uint8)
    squares[..., 1] = squares[..., 0] // 2 + 60  # correlated channels: a dominant component
    stats = color_stats(squares, "image", chunk=7)
    np.testing.assert_allclose(stats.mean, squares.mean(axis=0), rtol=1e-5)
    pixels = squares.reshape(-1, 3).astype(np.float64) / 255.0
    eigvals, eigvecs = np.linalg.eigh(np.cov(pixels, rowvar=False, bias=True))
    np.testing.assert_allclose(stats.eigvals, eigvals, rtol=1e-4, atol=1e-7)
    for i in range(3):  # eigenvectors up to sign
        assert abs(abs(float(stats.eigvecs[:, i] @ eigvecs[:, i])) - 1) < 1e-4
    channel = color_stats(squares, "channel")
    np.testing.assert_allclose(channel.mean, squares.reshape(-1, 3).mean(axis=0), rtol=1e-5)


def test_augment_batch_crops_flips_and_mean():
    size, crop = 16, 12
    square = np.arange(size * size * 3, dtype=np.float32).reshape(size, size, 3) % 251
    mean = np.full((3,), 7.0, np.float32)
    stats = ColorStats(mean, np.zeros(3, np.float32), np.eye(3, dtype=np.float32))
    batch = torch.from_numpy(np.stack([square.astype(np.uint8)] * 32))
    out = augment_batch(batch, stats, crop, pca_std=0.0, generator=torch.Generator().manual_seed(1)).numpy()
    assert out.shape == (32, 3, crop, crop)
    chw = square.transpose(2, 0, 1) - 7.0
    candidates = [chw[:, top : top + crop, left : left + crop] for top in range(5) for left in range(5)]
    flipped = 0
    for image in out:
        if any(np.array_equal(image, c) for c in candidates):
            continue
        assert any(np.array_equal(image, c[..., ::-1]) for c in candidates), "neither a crop nor a mirrored crop"
        flipped += 1
    assert 0 < flipped < 32  # both flipped and unflipped crops occur


def test_pca_noise_follows_the_principal_components():
    eigvecs = np.linalg.qr(np.random.default_rng(0).normal(size=(3, 3)))[0].astype(np.float32)
    eigvals = np.array([0.001, 0.01, 0.2], np.float32)
    stats = ColorStats(np.zeros(3, np.float32), eigvals, eigvecs)
    batch = torch.full((4000, 4, 4, 3), 100, dtype=torch.uint8)
    out = augment_batch(batch, stats, crop=4, pca_std=0.1, generator=torch.Generator().manual_seed(0))
    shift = out[:, :, 0, 0].numpy() - 100.0  # one colour shift per image, the same for all its pixels
    assert np.allclose(out.numpy(), out.numpy()[:, :, :1, :1], atol=1e-3)
    coords = shift @ eigvecs / 255.0  # back to [0, 1] units along each component
    np.testing.assert_allclose(coords.std(axis=0), 0.1 * eigvals, rtol=0.06)
    np.testing.assert_allclose(coords.mean(axis=0), 0, atol=0.1 * eigvals.max() * 0.1)


def test_decoded_squares_cache_is_reused(tmp_path):
    dataset = ImageFolder(CALTECH_ROOT)
    samples = dataset.samples("test30")[:3]
    first = load_squares(dataset, samples, 256, tmp_path)
    assert first.shape == (3, 256, 256, 3) and first.dtype == np.uint8
    assert len(list(tmp_path.glob("squares-*.npy"))) == 1
    np.testing.assert_array_equal(load_squares(dataset, samples, 256, tmp_path), first)


def test_a_few_training_steps_on_real_images_reduce_the_loss(tmp_path):
    """Ten SGD steps of the real loop over 16 real Caltech images lower their loss."""
    cfg = small_config(
        tmp_path,
        batch_size=16,
        val_fraction=0.0,
        lr=1e-3,
        dropout=0.0,
        pca_std=0.0,
        max_steps_per_epoch=1,
        classes=4,
        init="kaiming",
        input_scale=1 / 64,
    )
    data = load_data(cfg)
    keep = np.arange(0, len(data.train_labels), len(data.train_labels) // 16)[:16]
    data.train_squares, data.train_labels = np.asarray(data.train_squares)[keep], data.train_labels[keep]
    rt = setup_runtime(cfg)
    torch.manual_seed(0)
    model = cfg.network(4)
    optimizer = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=0.9, weight_decay=5e-4)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    sampler = torch.utils.data.distributed.DistributedSampler(range(16), num_replicas=1, rank=0, seed=0)
    fixed = augment_batch(
        torch.from_numpy(data.train_squares),
        data.stats,
        cfg.crop,
        cfg.input_scale,
        pca_std=0.0,
        generator=torch.Generator().manual_seed(0),
    )
    targets = torch.from_numpy(data.train_labels)

    def loss_now() -> float:
        with torch.no_grad():
            return F.cross_entropy(model.eval()(fixed)[0], targets).item()

    before = loss_now()
    for epoch in range(10):
        record = train_one_epoch(
            model, optimizer, scaler, data, sampler, cfg, rt, epoch, torch.Generator().manual_seed(0)
        )
        assert np.isfinite(record["train_loss"])
    assert loss_now() < 0.9 * before  # from ln 4 (a zero classifier at the start)


def test_one_training_step_takes_exactly_one_sgd_step(tmp_path):
    cfg = small_config(tmp_path, batch_size=4, val_fraction=0.0, dropout=0.0, pca_std=0.0, max_steps_per_epoch=1)
    data = load_data(cfg)
    rt = setup_runtime(cfg)
    torch.manual_seed(0)
    model = build_alexnet(3, dropout=0.0, init="kaiming", width=TEST_WIDTH)
    reference = build_alexnet(3, dropout=0.0, init="kaiming", width=TEST_WIDTH)
    reference.load_state_dict(model.state_dict())
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    sampler = torch.utils.data.distributed.DistributedSampler(
        range(len(data.train_labels)), num_replicas=1, rank=0, shuffle=True, seed=0, drop_last=True
    )
    train_one_epoch(
        model,
        optimizer,
        torch.amp.GradScaler("cpu", enabled=False),
        data,
        sampler,
        cfg,
        rt,
        0,
        torch.Generator().manual_seed(5),
    )

    sampler.set_epoch(0)
    idx = np.sort(np.array(list(sampler)[:4]))
    images = augment_batch(
        torch.from_numpy(np.ascontiguousarray(data.train_squares[idx])),
        data.stats,
        pca_std=0.0,
        generator=torch.Generator().manual_seed(5),
    )
    loss = F.cross_entropy(reference(images)[0], torch.from_numpy(data.train_labels[idx]))
    loss.backward()
    with torch.no_grad():  # first SGD step with momentum: p - lr * (g + wd * p)
        for p_ref, p in zip(reference.parameters(), model.parameters(), strict=True):
            torch.testing.assert_close(p, p_ref - 0.01 * (p_ref.grad + 5e-4 * p_ref), rtol=1e-4, atol=1e-6)


def test_resume_continues_exactly(tmp_path):
    whole = train(small_config(tmp_path / "a", epochs=2, init="kaiming", input_scale=1 / 64))
    cfg = small_config(tmp_path / "b", epochs=1, init="kaiming", input_scale=1 / 64, cache=str(tmp_path / "a/cache"))
    train(cfg)
    cfg.epochs, cfg.resume = 2, True
    resumed = train(cfg)
    a = torch.load(whole / "last.pt", weights_only=False)
    b = torch.load(resumed / "last.pt", weights_only=False)
    assert a["state"]["epoch"] == b["state"]["epoch"] == 2
    for key, value in a["model"].items():
        torch.testing.assert_close(b["model"][key], value, rtol=1e-5, atol=1e-6, msg=key)
    assert len((resumed / "metrics.jsonl").read_text().splitlines()) == 2
    assert (resumed / "curves.png").stat().st_size > 0


def test_time_limit_stops_after_the_epoch_that_passes_it(tmp_path):
    run = train(small_config(tmp_path, epochs=5, time_limit_minutes=1e-6))
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 1
    assert torch.load(run / "last.pt", weights_only=False)["state"]["epoch"] == 1


def test_train_command_evaluates_exports_and_publishes(tmp_path):
    store = tmp_path / "store"
    data = fewer_test_images(tmp_path / "caltech", per_class=20)
    code = alexnet_cli(
        [
            "train",
            "--data",
            str(data),
            "--classes",
            "2",
            "--epochs",
            "1",
            "--batch-size",
            "8",
            "--max-steps-per-epoch",
            "2",
            "--out",
            str(tmp_path / "run"),
            "--cache",
            str(tmp_path / "c"),
            "--init",
            "kaiming",
            "--input-scale",
            "0.015625",
            "--width",
            str(TEST_WIDTH),
            "--store-root",
            str(store),
            "--model-name",
            "tiny",
            "--no-index",
            "--no-fast-paths",  # int8 and bf16 at publish time: tests/test_quantize.py and the tiny model
        ]
    )
    assert code == 0
    version = load_version(store, "tiny")  # verifies every checksum
    manifest = version.manifest
    assert set(manifest.files) >= {"model.onnx"} and not {"model.int8.onnx", "model.bf16.onnx"} & set(manifest.files)
    assert manifest.version == "v1" and manifest.labels == ImageFolder(CALTECH_ROOT).classes()[:2]
    assert manifest.preprocessing.scale == 0.015625 and manifest.preprocessing.mean_kind == "image"
    assert manifest.recipe["deviations"]["init"] == "kaiming" and manifest.recipe["deviations"]["width"] == TEST_WIDTH
    assert manifest.feature_dim == 1024  # fc7 at a quarter of the paper's 4096 units: what the gallery stores
    test = manifest.metrics["test"]
    assert set(test) == {"center", "ten_crop"} and test["ten_crop"]["images"] == test["center"]["images"] == 40
    assert manifest.metrics["onnx_parity"]["rel_logits"] < 1e-4
    assert json.loads((version.path / "metrics.json").read_text())["test"] == test
    assert version.preprocessor().mean.shape == (256, 256, 3)


def test_train_command_without_the_dataset_fails_clearly(tmp_path, capsys):
    code = alexnet_cli(["train", "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "run")])
    assert code == 2
    err = capsys.readouterr().err
    assert "dataset not found" in err and "ALEXNET_DATA" in err
    assert not (tmp_path / "run").exists()  # nothing written before the data is there


def test_cosine_schedule_warms_up_then_decays_to_zero(tmp_path):
    from training.train import scheduled_lr

    cfg = small_config(tmp_path, lr=0.02, epochs=4, lr_schedule="cosine", warmup_epochs=1.0)
    assert scheduled_lr(cfg, 0.5) == pytest.approx(0.01)  # half-way through the warm-up
    assert scheduled_lr(cfg, 2.0) == pytest.approx(0.01)  # half-way through the cosine: lr / 2
    assert scheduled_lr(cfg, 4.0) == pytest.approx(0.0, abs=1e-12)
    assert scheduled_lr(small_config(tmp_path, warmup_epochs=1.0), 2.0) is None  # the plateau schedule's turn
    run = train(small_config(tmp_path, epochs=2, lr=0.02, lr_schedule="cosine", init="kaiming", input_scale=1 / 64))
    lrs = [json.loads(line)["lr"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert lrs == pytest.approx([0.01, 0.0], abs=1e-9)  # the rate each epoch ended with
    with pytest.raises(ValueError, match="lr_schedule"):
        train(small_config(tmp_path / "bad", lr_schedule="step"))
