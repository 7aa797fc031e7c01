"""Datasets and the paper's data augmentation (section 4.1).

Images are decoded once with the shared preprocessing (shorter side 256, centre 256x256) into a
uint8 array cached on disk, so an epoch costs no JPEG decoding. Augmentation works on batches of
those uint8 squares as torch tensors on the training device (the GPU when there is one, so the CPU
is not the bottleneck): mean subtraction, PCA colour noise, a random 224 crop and a random flip.
"""

from __future__ import annotations

import hashlib
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from model_store.preprocessing import decode_image, resize_center_crop

log = logging.getLogger(__name__)
TEST_SPLIT_OF = {"train30": "test30", "train80": "test20"}
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")


class DatasetError(RuntimeError):
    pass


@dataclass(frozen=True)
class Sample:
    path: str  # relative to the dataset's images folder: "<class>/<file>"
    label: int


@dataclass(frozen=True)
class ImageFolder:
    """A folder per class under ``<root>/images`` (or ``<root>`` itself) with optional split files
    in ``<root>/splits/<split>.txt`` listing ``<class>/<file>`` per line."""

    root: Path

    @property
    def image_dir(self) -> Path:
        images = self.root / "images"
        return images if images.is_dir() else self.root

    def _require(self) -> None:
        if not self.image_dir.is_dir():
            raise DatasetError(
                f"dataset not found at {self.root}: expected an ImageFolder layout (images/<class>/*.jpg); "
                "set --data or ALEXNET_DATA to its path"
            )

    def classes(self) -> list[str]:
        self._require()
        listed = self.root / "classes.txt"
        if listed.is_file():
            return [line.strip() for line in listed.read_text().splitlines() if line.strip()]
        return sorted(p.name for p in self.image_dir.iterdir() if p.is_dir())

    def samples(self, split: str | None = None) -> list[Sample]:
        index = {name: i for i, name in enumerate(self.classes())}
        if split is None:
            paths = sorted(
                f"{c}/{p.name}"
                for c in index
                for p in (self.image_dir / c).iterdir()
                if p.suffix.lower() in IMAGE_SUFFIXES
            )
        else:
            split_file = self.root / "splits" / f"{split}.txt"
            if not split_file.is_file():
                raise DatasetError(f"no split file {split_file}")
            paths = [line.strip() for line in split_file.read_text().splitlines() if line.strip()]
        samples = []
        for rel in paths:
            cls = rel.split("/", 1)[0]
            if cls not in index:
                raise DatasetError(f"{rel}: class {cls!r} is not in the dataset's classes")
            samples.append(Sample(rel, index[cls]))
        return samples


def load_squares(
    dataset: ImageFolder,
    samples: list[Sample],
    size: int = 256,
    cache_dir: Path | None = None,
    workers: int | None = None,
) -> np.ndarray:
    """uint8 [N, size, size, 3], decoded with the shared preprocessing; cached as a .npy file.

    The cache key covers the dataset path, the sample list and the size, so a changed split never
    reads a stale cache. The file is written under a temporary name and renamed when complete.
    """
    key = hashlib.sha256(f"{dataset.root.resolve()}|{size}|{[s.path for s in samples]}".encode()).hexdigest()[:16]
    cache_file = Path(cache_dir) / f"squares-{size}-{len(samples)}-{key}.npy" if cache_dir else None
    if cache_file is not None and cache_file.is_file():
        return np.load(cache_file, mmap_mode="r")

    def decode(sample: Sample) -> np.ndarray:
        return resize_center_crop(decode_image(dataset.image_dir / sample.path), size)

    with ThreadPoolExecutor(max_workers=workers or min(8, os.cpu_count() or 1)) as pool:
        squares = np.stack(list(pool.map(decode, samples))) if samples else np.zeros((0, size, size, 3), np.uint8)
    if cache_file is not None:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache_file.with_suffix(".tmp.npy")
        np.save(tmp, squares)
        os.replace(tmp, cache_file)
        log.info("cached %d decoded images in %s", len(samples), cache_file)
    return squares


def stratified_holdout(samples: list[Sample], fraction: float, seed: int) -> tuple[list[Sample], list[Sample]]:
    """Split off ``fraction`` of each class (at least one image where a class has two or more)."""
    rng = np.random.default_rng(seed)
    by_class: dict[int, list[Sample]] = {}
    for s in samples:
        by_class.setdefault(s.label, []).append(s)
    keep, held = [], []
    for label in sorted(by_class):
        items = by_class[label]
        order = rng.permutation(len(items))
        n_held = 0 if fraction <= 0 or len(items) < 2 else max(1, round(fraction * len(items)))
        held += [items[i] for i in order[:n_held]]
        keep += [items[i] for i in order[n_held:]]
    return keep, held


@dataclass(frozen=True)
class ColorStats:
    """Training-set statistics: the mean (image or per channel) and the RGB covariance's PCA."""

    mean: np.ndarray  # float32 [H, W, 3] or [3], in the input's units (pixel values * scale)
    eigvals: np.ndarray  # float32 [3], variances of the principal components of pixel values in [0, 1]
    eigvecs: np.ndarray  # float32 [3, 3], columns are the principal directions


def color_stats(squares: np.ndarray, mean_kind: str = "image", scale: float = 1.0, chunk: int = 256) -> ColorStats:
    """Mean image (or per-channel mean) and the eigen-decomposition of the 3x3 RGB covariance over
    every pixel of the training set (section 4.1), accumulated in float64 in chunks.

    The covariance is taken of pixel values in [0, 1], as cuda-convnet did: the paper's noise
    alpha_i * lambda_i with alpha ~ N(0, 0.1) is then a few percent of the intensity range (about
    6/255 along the first component on Caltech-101). On raw 0..255 values the eigenvalues are in
    squared pixel units and the same formula would shift colours by hundreds of pixel values.
    """
    n = len(squares)
    if n == 0:
        raise DatasetError("cannot compute statistics of an empty training set")
    pixel_sum = np.zeros(squares.shape[1:], np.float64)
    outer = np.zeros((3, 3), np.float64)
    for start in range(0, n, chunk):
        block = squares[start : start + chunk].astype(np.float64)
        pixel_sum += block.sum(axis=0)
        flat = block.reshape(-1, 3) / 255.0
        outer += flat.T @ flat
    mean_image = pixel_sum / n
    channel_mean = mean_image.reshape(-1, 3).mean(axis=0)
    count = n * squares.shape[1] * squares.shape[2]
    unit_mean = channel_mean / 255.0
    cov = outer / count - np.outer(unit_mean, unit_mean)
    eigvals, eigvecs = np.linalg.eigh(cov)
    mean = (mean_image if mean_kind == "image" else channel_mean) * scale
    if mean_kind not in ("image", "channel"):
        raise ValueError(f"mean_kind must be 'image' or 'channel', got {mean_kind!r}")
    return ColorStats(mean.astype(np.float32), np.clip(eigvals, 0, None).astype(np.float32), eigvecs.astype(np.float32))


def augment_batch(
    squares: torch.Tensor,
    stats: ColorStats,
    crop: int = 224,
    scale: float = 1.0,
    pca_std: float = 0.1,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """uint8 [N, S, S, 3] on any device -> float32 [N, 3, crop, crop], the paper's training input.

    Per image: subtract the mean, add PCA colour noise sum_i alpha_i * lambda_i * p_i with
    alpha_i ~ N(0, pca_std) (drawn once per image per pass; ``eigvals`` are the lambda_i of pixel
    values in [0, 1], so the shift is multiplied by 255 * scale to be in the input's units), take a
    random crop and flip it horizontally with probability 1/2.
    """
    device = squares.device
    n, size = squares.shape[0], squares.shape[1]
    x = squares.permute(0, 3, 1, 2).float()
    if scale != 1.0:
        x = x * scale
    mean = torch.as_tensor(stats.mean, device=device)
    x = x - (mean.permute(2, 0, 1) if mean.ndim == 3 else mean.view(3, 1, 1))
    if pca_std > 0:
        alpha = torch.randn(n, 3, generator=generator, device="cpu").to(device) * pca_std
        eigvals = torch.as_tensor(stats.eigvals, device=device)
        eigvecs = torch.as_tensor(stats.eigvecs, device=device)
        shift = (alpha * eigvals) @ eigvecs.T * (255.0 * scale)  # [N, 3]: sum_i alpha_i lambda_i p_i
        x = x + shift.view(n, 3, 1, 1)
    tops = torch.randint(0, size - crop + 1, (n,), generator=generator).tolist()
    lefts = torch.randint(0, size - crop + 1, (n,), generator=generator).tolist()
    flips = (torch.rand(n, generator=generator) < 0.5).tolist()
    out = torch.empty(n, 3, crop, crop, device=device)
    for i, (top, left, flip) in enumerate(zip(tops, lefts, flips, strict=True)):
        patch = x[i, :, top : top + crop, left : left + crop]
        out[i] = patch.flip(-1) if flip else patch
    return out
