"""Train AlexNet with the paper's recipe (section 5): SGD, batch 128, momentum 0.9, weight decay
5e-4, lr 0.01 divided by 10 when the validation error stops improving (at most three times).

Reads top to bottom: runtime/DDP/AMP setup, ``train_one_epoch``, ``validate``, ``train(config)``;
the options (with help) are ``training.config.TrainConfig``. Runs on one CPU or GPU, or on several
GPUs under torchrun (DDP: ranks from the environment, only rank 0 logs and saves). On CUDA: mixed precision (bf16 where
supported, else fp16 with a grad scaler) by default; channels_last is an option, off by default
because it made AlexNet's steps slower on an H100 (measured in benchmarks/results/gpu_h100.md).
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data.distributed import DistributedSampler

from model_store.preprocessing import Preprocessor
from training.config import TrainConfig
from training.data import ColorStats, ImageFolder, augment_batch, color_stats, load_squares, stratified_holdout
from training.model import AlexNet
from training.progress import progress

log = logging.getLogger(__name__)
CHECKPOINT_LAST = "last.pt"
CHECKPOINT_BEST = "best.pt"
METRICS_LOG = "metrics.jsonl"
CURVES = "curves.png"


@dataclass
class Runtime:
    device: torch.device
    rank: int
    world_size: int
    amp_dtype: torch.dtype | None
    channels_last: bool

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup_runtime(cfg: TrainConfig) -> Runtime:
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    if cfg.device == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(cfg.device)
    if world_size > 1:
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if device.type == "cuda":
            device = torch.device("cuda", local_rank)
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    amp = cfg.amp
    if amp == "auto":
        amp = ("bf16" if torch.cuda.is_bf16_supported() else "fp16") if device.type == "cuda" else "off"
    amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "off": None}[amp]
    channels_last = cfg.channels_last == "on" or (cfg.channels_last == "auto" and device.type == "cuda")
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    return Runtime(device, rank, world_size, amp_dtype, channels_last)


@dataclass
class Data:
    classes: list[str]
    train_squares: np.ndarray
    train_labels: np.ndarray
    val_squares: np.ndarray
    val_labels: np.ndarray
    stats: ColorStats


def load_data(cfg: TrainConfig) -> Data:
    dataset = ImageFolder(Path(cfg.data))
    classes = dataset.classes()
    samples = dataset.samples(cfg.split)
    if cfg.classes:
        classes = classes[: cfg.classes]
        samples = [s for s in samples if s.label < cfg.classes]
    train, val = stratified_holdout(samples, cfg.val_fraction, cfg.seed)
    train_squares = load_squares(dataset, train, cfg.resize, Path(cfg.cache))
    val_squares = load_squares(dataset, val, cfg.resize, Path(cfg.cache))
    stats = color_stats(train_squares, cfg.mean_kind, cfg.input_scale)
    return Data(
        classes, train_squares, np.array([s.label for s in train]), val_squares, np.array([s.label for s in val]), stats
    )


def autocast(rt: Runtime):
    return torch.autocast(rt.device.type, dtype=rt.amp_dtype or torch.float32, enabled=rt.amp_dtype is not None)


def scheduled_lr(cfg: TrainConfig, progress: float) -> float | None:
    """The learning rate at ``progress`` epochs into training, where the step schedule sets it (warm-up, cosine);
    None where the plateau schedule is in charge."""
    if cfg.warmup_epochs and progress <= cfg.warmup_epochs:
        return cfg.lr * progress / cfg.warmup_epochs
    if cfg.lr_schedule == "cosine":
        return cfg.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, progress / cfg.epochs)))
    return None


def train_one_epoch(
    model,
    optimizer,
    scaler,
    data: Data,
    sampler: DistributedSampler,
    cfg: TrainConfig,
    rt: Runtime,
    epoch: int,
    generator: torch.Generator,
) -> dict:
    model.train()
    sampler.set_epoch(epoch)
    order = list(sampler)
    per_rank = cfg.batch_size // rt.world_size
    steps = len(order) // per_rank or 1
    if cfg.max_steps_per_epoch:
        steps = min(steps, cfg.max_steps_per_epoch)
    totals = torch.zeros(3, device=rt.device)  # loss sum, correct, seen
    start = time.perf_counter()
    bar = progress(steps, f"epoch {epoch + 1}", enabled=rt.is_main)
    for step in range(steps):
        idx = np.sort(np.array(order[step * per_rank : (step + 1) * per_rank]))
        squares = torch.from_numpy(np.ascontiguousarray(data.train_squares[idx])).to(rt.device, non_blocking=True)
        targets = torch.from_numpy(data.train_labels[idx]).to(rt.device, non_blocking=True)
        images = augment_batch(squares, data.stats, cfg.crop, cfg.input_scale, cfg.pca_std, generator)
        if rt.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with autocast(rt):
            logits, _ = model(images)
            loss = F.cross_entropy(logits.float(), targets, label_smoothing=cfg.label_smoothing)
        lr = scheduled_lr(cfg, epoch + (step + 1) / steps)
        if lr is not None:
            for group in optimizer.param_groups:
                group["lr"] = lr
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        if cfg.clip_grad_norm:
            scaler.unscale_(optimizer)  # clip the true gradients, not the loss-scaled ones
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_grad_norm)
        scaler.step(optimizer)
        scaler.update()
        totals += torch.stack(
            [
                loss.detach() * len(idx),
                (logits.argmax(1) == targets).sum().float(),
                torch.tensor(float(len(idx)), device=rt.device),
            ]
        )
        if rt.is_main and (step % 5 == 0 or step == steps - 1):
            seen = totals[2].item()
            rate = seen * rt.world_size / (time.perf_counter() - start)
            bar.set_postfix(
                loss=f"{totals[0].item() / seen:.3f}", acc=f"{totals[1].item() / seen:.3f}", img_s=f"{rate:.0f}"
            )
        bar.update(1)
    bar.close()
    if rt.world_size > 1:
        dist.all_reduce(totals)
    elapsed = time.perf_counter() - start
    loss_sum, correct, seen = totals.tolist()
    return {
        "train_loss": loss_sum / seen,
        "train_top1_acc": correct / seen,
        "epoch_seconds": elapsed,
        "images_per_second": seen / elapsed,
    }


@torch.no_grad()
def validate(model: AlexNet, data: Data, pre: Preprocessor, rt: Runtime, batch: int = 64) -> dict:
    """Centre-crop error on the held-out images (what drives the lr schedule)."""
    if len(data.val_labels) == 0:
        return {}
    model.eval()
    losses, top1, top5 = [], [], []
    for start in range(0, len(data.val_labels), batch):
        crops = np.concatenate([pre.crops_from_square(sq, "center") for sq in data.val_squares[start : start + batch]])
        targets = torch.from_numpy(data.val_labels[start : start + batch]).to(rt.device)
        images = torch.from_numpy(crops).to(rt.device)
        if rt.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with autocast(rt):
            logits, _ = model(images)
        logits = logits.float()
        losses.append(F.cross_entropy(logits, targets, reduction="sum").item())
        best5 = logits.topk(min(5, logits.shape[1]), dim=1).indices
        top1.append((best5[:, 0] == targets).sum().item())
        top5.append((best5 == targets[:, None]).any(dim=1).sum().item())
    n = len(data.val_labels)
    return {"val_loss": sum(losses) / n, "val_top1_error": 1 - sum(top1) / n, "val_top5_error": 1 - sum(top5) / n}


def save_checkpoint(path: Path, **state) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def train(cfg: TrainConfig) -> Path:
    """Train and return the run folder (best.pt, last.pt, metrics.jsonl, config.json, curves.png)."""
    if cfg.lr_schedule not in ("plateau", "cosine"):
        raise ValueError(f"lr_schedule must be 'plateau' or 'cosine', got {cfg.lr_schedule!r}")
    rt = setup_runtime(cfg)
    torch.manual_seed(cfg.seed + rt.rank)
    out = Path(cfg.out)
    data = load_data(cfg)  # first: a missing dataset fails before anything is written
    if rt.is_main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text(json.dumps(cfg.as_dict(), indent=2))
        log.info("config: %s", json.dumps(cfg.as_dict()))
        log.info(
            "device %s, world size %d, amp %s, channels_last %s",
            rt.device,
            rt.world_size,
            rt.amp_dtype,
            rt.channels_last,
        )
        np.save(out / "mean.npy", data.stats.mean)
        log.info(
            "%d classes, %d training and %d validation images; PCA eigenvalues %s",
            len(data.classes),
            len(data.train_labels),
            len(data.val_labels),
            [float(f"{v:.4g}") for v in data.stats.eigvals],
        )
    pre = Preprocessor(mean=data.stats.mean, resize=cfg.resize, crop=cfg.crop, scale=cfg.input_scale)

    model = cfg.network(len(data.classes)).to(rt.device)
    if rt.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="min", factor=0.1, patience=cfg.lr_patience)
    scaler = torch.amp.GradScaler(rt.device.type, enabled=rt.amp_dtype == torch.float16)
    state = {"epoch": 0, "best_val_error": math.inf, "lr_drops": 0}

    last = out / CHECKPOINT_LAST
    if cfg.resume and last.is_file():
        ckpt = torch.load(last, map_location=rt.device, weights_only=False)
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        scaler.load_state_dict(ckpt["scaler"])
        state = ckpt["state"]
        torch.set_rng_state(ckpt["rng"])  # dropout draws continue as in an uninterrupted run
        if rt.is_main:
            log.info("resumed from %s at epoch %d", last, state["epoch"])

    net = DistributedDataParallel(model) if rt.world_size > 1 else model
    sampler = DistributedSampler(
        range(len(data.train_labels)),
        num_replicas=rt.world_size,
        rank=rt.rank,
        shuffle=True,
        seed=cfg.seed,
        drop_last=True,
    )
    generator = torch.Generator().manual_seed(cfg.seed * 1000 + rt.rank)
    started = time.perf_counter()
    for epoch in range(state["epoch"], cfg.epochs):
        if epoch:  # the augmentation draws depend only on (seed, epoch), so a resumed run draws the same
            generator.manual_seed(cfg.seed * 1000 + rt.rank + epoch)
        record = {"epoch": epoch + 1}
        record |= train_one_epoch(net, optimizer, scaler, data, sampler, cfg, rt, epoch, generator)
        record |= validate(model, data, pre, rt)
        record["lr"] = optimizer.param_groups[0]["lr"]  # the rate this epoch ended with
        val_error = record.get("val_top1_error", record["train_loss"])
        if cfg.lr_schedule == "plateau":
            lr_before = optimizer.param_groups[0]["lr"]
            scheduler.step(val_error)
            if optimizer.param_groups[0]["lr"] < lr_before:
                state["lr_drops"] += 1
        improved = val_error < state["best_val_error"]
        state["best_val_error"] = min(val_error, state["best_val_error"])
        state["epoch"] = epoch + 1
        if rt.is_main:
            with open(out / METRICS_LOG, "a") as fh:
                fh.write(json.dumps(record) + "\n")
            log.info(
                "epoch %d: %s", epoch + 1, {k: round(v, 4) if isinstance(v, float) else v for k, v in record.items()}
            )
            ckpt = {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "scaler": scaler.state_dict(),
                "state": state,
                "config": cfg.as_dict(),
                "classes": data.classes,
                "rng": torch.get_rng_state(),
                "mean": data.stats.mean,
                "pca": {"eigvals": data.stats.eigvals, "eigvecs": data.stats.eigvecs},
            }
            save_checkpoint(last, **ckpt)
            if improved:
                save_checkpoint(out / CHECKPOINT_BEST, **ckpt)
            plot_curves(out)
        if state["lr_drops"] > cfg.max_lr_drops:
            if rt.is_main:
                log.info("validation error stopped improving after %d lr drops: stopping", cfg.max_lr_drops)
            break
        if cfg.time_limit_minutes and time.perf_counter() - started > cfg.time_limit_minutes * 60:
            if rt.is_main:
                log.info("time limit of %g minutes reached after epoch %d: stopping", cfg.time_limit_minutes, epoch + 1)
            break
    if rt.world_size > 1:
        dist.destroy_process_group()
    return out


def read_metrics(run_dir: Path) -> list[dict]:
    path = Path(run_dir) / METRICS_LOG
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []


def plot_curves(run_dir: Path) -> Path | None:
    """curves.png: training loss, and training/validation error per epoch."""
    records = read_metrics(run_dir)
    if not records:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [r["epoch"] for r in records]
    fig, (ax_loss, ax_err) = plt.subplots(1, 2, figsize=(11, 4))
    ax_loss.plot(epochs, [r["train_loss"] for r in records], label="train loss")
    if "val_loss" in records[0]:
        ax_loss.plot(epochs, [r["val_loss"] for r in records], label="validation loss")
    ax_loss.set_xlabel("epoch")
    ax_loss.legend()
    ax_err.plot(epochs, [1 - r["train_top1_acc"] for r in records], label="train top-1 error (augmented)")
    if "val_top1_error" in records[0]:
        ax_err.plot(epochs, [r["val_top1_error"] for r in records], label="validation top-1 error")
        ax_err.plot(epochs, [r["val_top5_error"] for r in records], label="validation top-5 error")
    ax_err.set_xlabel("epoch")
    ax_err.set_ylim(0, 1)
    ax_err.legend()
    fig.tight_layout()
    path = Path(run_dir) / CURVES
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
