"""Where a served image's preprocessing CPU goes, step by step, on real Caltech-101 JPEGs.

The service (and training, and the export checks) turn an upload into crops with
model_store/preprocessing.py: decode, rescale the shorter side to 256 and keep the central
256x256 square, then normalise one centre crop or ten. This times each step in one thread, one
image at a time as a decode thread does, and sets the square step against its baseline measured in
the same run: rescaling the whole image and cropping (what resize_center_crop did before it
resampled only the square).

    python benchmarks/bench_preprocess.py --images 100 --repeats 5 --output benchmarks/results/preprocess_cpu.md
"""

from __future__ import annotations

import argparse
import datetime
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import bench_args  # noqa: E402
from bench_service import load_images, machine  # noqa: E402

from model_store.preprocessing import decode_image, resize_center_crop  # noqa: E402
from model_store.store import load_version  # noqa: E402


def rescale_all_then_crop(img: Image.Image, size: int = 256) -> np.ndarray:
    """The baseline: the whole image rescaled (shorter side ``size``), then its central square."""
    width, height = img.size
    scale = size / min(width, height)
    new_w, new_h = max(size, round(width * scale)), max(size, round(height * scale))
    left, top = (new_w - size) // 2, (new_h - size) // 2
    whole = img.resize((new_w, new_h), Image.Resampling.BILINEAR)
    return np.asarray(whole.crop((left, top, left + size, top + size)), dtype=np.uint8)


def ms_per_item(step: Callable[[object], object], items: list, repeats: int) -> float:
    """Median over ``repeats`` passes of one pass's thread CPU per item (ms)."""
    passes = []
    for _ in range(repeats):
        started = time.thread_time()
        for item in items:
            step(item)
        passes.append((time.thread_time() - started) / len(items) * 1000)
    return float(np.median(passes))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    bench_args.add_model_args(parser)
    parser.add_argument("--images", type=int, default=100, help="test-split images, one per class")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--output", type=Path, default=Path("benchmarks/results/preprocess_cpu.md"))
    args = parser.parse_args(argv)

    pre = load_version(args.store_root, args.model_name, args.version).preprocessor()
    blobs = [data for _, data in load_images(args.data_root, args.images)]
    decoded = [decode_image(blob, pre.max_pixels, pre.resize) for blob in blobs]  # JPEG draft, as served
    squares = [resize_center_crop(img, pre.resize) for img in decoded]
    baseline = ms_per_item(lambda img: rescale_all_then_crop(img, pre.resize), decoded, args.repeats)
    boxed = ms_per_item(lambda img: resize_center_crop(img, pre.resize), decoded, args.repeats)
    steps = [
        ("decode (JPEG, EXIF, RGB)", ms_per_item(lambda b: decode_image(b, pre.max_pixels, pre.resize), blobs, 1)),
        ("square: rescale all, then crop (baseline)", baseline),
        ("square: resample the square only (served)", boxed),
        ("normalise: centre crop", ms_per_item(lambda sq: pre.crops_from_square(sq, "center"), squares, args.repeats)),
        ("normalise: ten crops", ms_per_item(lambda sq: pre.crops_from_square(sq, "ten_crop"), squares, args.repeats)),
    ]
    differences = [np.abs(rescale_all_then_crop(img).astype(np.int16) - resize_center_crop(img)) for img in decoded]
    sizes = np.array([img.size for img in decoded])
    lines = [
        "# Preprocessing CPU per image",
        "",
        f"- date: {datetime.datetime.now().isoformat(timespec='seconds')}",
        f"- machine: {machine()}",
        f"- {len(blobs)} Caltech-101 test JPEGs (median {int(np.median(sizes[:, 0]))}x{int(np.median(sizes[:, 1]))}"
        f" px), one thread, thread CPU time, median of {args.repeats} passes (decode: one pass)",
        f"- command: `{bench_args.command_line(__file__, argv)}`",
        "",
        "| step | CPU ms per image |",
        "|---|---:|",
        *[f"| {name} | {ms:.3f} |" for name, ms in steps],
        "",
        f"Resampling only the square: **{boxed / baseline:.2f}x** the baseline's CPU. Its pixels differ from"
        f" the baseline's by at most {max(int(d.max()) for d in differences)} (of 255), mean"
        f" {np.mean([d.mean() for d in differences]):.3f}: rounding.",
        "",
    ]
    bench_args.write_report(args.output, "\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
