"""Image decoding throughput: can the CPU feed the model?

Measures, in one run, images/s of the shared preprocessing's decode -> 256x256 square step
(model_store/preprocessing.py) on real Caltech-101 JPEGs (about 300x240) and on large photos made
from them (upscaled to 4000x3000 and re-encoded, like a phone camera's), with 1 process and with a
pool of processes, full decoding against JPEG draft mode. It also reports how much draft mode changes
the 256x256 square (mean and max absolute pixel difference), the figure that decides whether it may
serve.

    python benchmarks/bench_decode.py --data ../shared/datasets/caltech101 --images 400 --workers 1 2

Prints a markdown table; --out writes it to a file too.
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model_store.preprocessing import decode_image, resize_center_crop  # noqa: E402

SIZE = 256


def _square(blob: bytes, draft: bool) -> np.ndarray:
    return resize_center_crop(decode_image(blob, draft_min_side=SIZE if draft else 0), SIZE)


def _decode_all(blobs: list[bytes], draft: bool) -> int:
    for blob in blobs:
        _square(blob, draft)
    return len(blobs)


def measure(blobs: list[bytes], workers: int, draft: bool) -> float:
    """images/s decoding every blob once with ``workers`` processes (1: in this process)."""
    if workers == 1:
        start = time.perf_counter()
        _decode_all(blobs, draft)
        return len(blobs) / (time.perf_counter() - start)
    chunks = [blobs[i::workers] for i in range(workers)]
    with ProcessPoolExecutor(workers) as pool:
        list(pool.map(_decode_all, [c[:2] for c in chunks], [draft] * workers))  # start the workers
        start = time.perf_counter()
        done = sum(pool.map(_decode_all, chunks, [draft] * workers))
        return done / (time.perf_counter() - start)


def large_photos(blobs: list[bytes], count: int) -> list[bytes]:
    out = []
    for blob in blobs[:count]:
        img = Image.open(io.BytesIO(blob)).convert("RGB").resize((4000, 3000), Image.Resampling.BICUBIC)
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=90)
        out.append(buf.getvalue())
    return out


def draft_difference(blobs: list[bytes]) -> tuple[float, int]:
    diffs = [np.abs(_square(b, False).astype(np.int16) - _square(b, True)) for b in blobs]
    return float(np.mean([d.mean() for d in diffs])), int(max(d.max() for d in diffs))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=os.environ.get("ALEXNET_DATA", "../shared/datasets/caltech101"))
    ap.add_argument("--split", default="test30")
    ap.add_argument("--images", type=int, default=400, help="Caltech images to decode")
    ap.add_argument("--large", type=int, default=48, help="4000x3000 photos to decode")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, os.cpu_count() or 1])
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()

    root = Path(args.data)
    names = (root / "splits" / f"{args.split}.txt").read_text().split()[: args.images]
    small = [(root / "images" / n).read_bytes() for n in names]
    large = large_photos(small, args.large)
    sets = {"caltech (~300x240)": small, "photo (4000x3000)": large}

    lines = [
        f"Decode -> 256x256 square, images/s. Machine: {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs. Command: python {' '.join(sys.argv)}",
        "",
        "| images | workers | full decode | draft mode | draft / full |",
        "|---|---:|---:|---:|---:|",
    ]
    for label, blobs in sets.items():
        for workers in args.workers:
            full, draft = measure(blobs, workers, False), measure(blobs, workers, True)
            lines.append(f"| {label} | {workers} | {full:.1f} | {draft:.1f} | {draft / full:.2f} |")
    lines.append("")
    for label, blobs in sets.items():
        mean_diff, max_diff = draft_difference(blobs[:48])
        lines.append(f"- draft vs full on {label}: mean |diff| {mean_diff:.3f}, max |diff| {max_diff} (of 255)")
    text = "\n".join(lines)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
