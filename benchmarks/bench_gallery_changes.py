"""What one gallery change costs: an fsynced append to the change log against the whole rewrite
every change used to be (the baseline, measured in the same run by forcing a compaction on every
change), and what the logged changes add to a search.

For each index kind and gallery size: a base gallery of synthetic 4096-d vectors is built, then
``--changes`` single-image adds and as many removes of base items are made, one at a time, each
timed until it returns (it is on disk then); then ``--queries`` single-vector searches are timed
with those changes logged (a delta of exact rows and a tombstone set) and after compacting them.

    python benchmarks/bench_gallery_changes.py --sizes 20000 100000 --kinds flat ivf_pq
"""

from __future__ import annotations

import argparse
import datetime
import io
import os
import platform
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from model_store.gallery import Compaction, Gallery  # noqa: E402
from model_store.index_kinds import KINDS  # noqa: E402

DIM = 4096
EVERY_CHANGE = Compaction(records=0, fraction=0.0, max_bytes=0)  # the old behaviour: rewrite per change


@dataclass(frozen=True)
class Row:
    kind: str
    size: int
    mode: str  # "change log" or "rewrite per change"
    add_p50: float
    add_p99: float
    remove_p50: float
    remove_p99: float
    search_logged_p50: float  # ms, with the changes in the log (delta + tombstones)
    search_base_p50: float  # ms, the same gallery compacted


def vectors(n: int, seed: int) -> np.ndarray:
    """Sparse non-negative rows with fc7's rough shape: about 65% zeros, as in fc7; norms about 53
    (real fc7: about 40)."""
    rng = np.random.default_rng(seed)
    x = np.maximum(rng.standard_normal((n, DIM), dtype=np.float32) * 1.6 - 0.6, 0)
    return x


def thumbnail() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (96, 96), (120, 90, 60)).save(out, "JPEG", quality=85)
    return out.getvalue()


def percentiles(seconds: list[float]) -> tuple[float, float]:
    ms = np.array(seconds) * 1000
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 99))


def build(directory: Path, kind: str, size: int) -> None:
    """A base gallery of ``size`` items written in ``directory`` (one base write; trains ``kind``)."""
    gallery = Gallery.empty(directory, DIM, kind)
    thumb = thumbnail()
    gallery.add(vectors(size, 0), ["base"] * size, [None] * size, [thumb] * size)


def timed_searches(gallery: Gallery, queries: np.ndarray) -> float:
    gallery.search(queries[:1], 10)
    seconds = []
    for q in queries:
        started = time.perf_counter()
        gallery.search(q[None], 10)
        seconds.append(time.perf_counter() - started)
    return percentiles(seconds)[0]


def run(kind: str, size: int, mode: str, args: argparse.Namespace, base: Path) -> Row:
    directory = base.with_name(f"{base.name}-{mode.replace(' ', '-')}")
    shutil.copytree(base, directory)
    gallery = Gallery.load(directory, EVERY_CHANGE if mode == "rewrite per change" else Compaction())
    thumb = thumbnail()
    new = vectors(args.changes, 1)
    add_s, remove_s = [], []
    for row in new:
        started = time.perf_counter()
        gallery.add(row[None], ["new"], ["bench"], [thumb])
        add_s.append(time.perf_counter() - started)
    for item_id in range(args.changes):  # base items
        started = time.perf_counter()
        gallery.remove(item_id)
        remove_s.append(time.perf_counter() - started)
    queries = vectors(args.queries, 2)
    logged = timed_searches(gallery, queries)
    compacted = Gallery.load(directory, EVERY_CHANGE)
    compacted.remove(args.changes)  # one more change, which compacts everything logged
    base = timed_searches(compacted, queries)
    shutil.rmtree(directory)
    row = Row(kind, size, mode, *percentiles(add_s), *percentiles(remove_s), logged, base)
    print(row, flush=True)
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[20_000])
    parser.add_argument("--kinds", nargs="+", default=["flat", "ivf_pq"], choices=KINDS)
    parser.add_argument("--changes", type=int, default=20, help="single-image adds, then as many removes")
    parser.add_argument("--queries", type=int, default=50)
    parser.add_argument("--dir", type=Path, default=None, help="where to build the galleries (default: a temp dir)")
    parser.add_argument("--output", type=Path, default=REPO_ROOT / "benchmarks" / "results" / "gallery_changes.md")
    args = parser.parse_args(argv)

    load_before = os.getloadavg()
    rows = []
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="bench-gallery-") as tmp:
        for size in args.sizes:
            for kind in args.kinds:
                base = Path(tmp) / f"{kind}-{size}"
                started = time.perf_counter()
                build(base, kind, size)
                print(f"built {kind} {size:,} in {time.perf_counter() - started:.0f} s", flush=True)
                for mode in ("rewrite per change", "change log"):
                    rows.append(run(kind, size, mode, args, base))
                shutil.rmtree(base)

    lines = [
        "# What a gallery change costs (CPU)",
        "",
        f"- date: {datetime.datetime.now().isoformat(timespec='seconds')}",
        f"- machine: {platform.machine()}, {os.cpu_count()} logical CPUs; load average before / after:"
        f" {load_before[0]:.2f} / {os.getloadavg()[0]:.2f}",
        f"- command: `python benchmarks/bench_gallery_changes.py {' '.join(argv or sys.argv[1:])}`",
        f"- each row: a base of `size` synthetic 4096-d vectors, then {args.changes} single-image adds and"
        f" {args.changes} removes of base items, each timed until it returns (on disk, fsynced). **rewrite per"
        " change** is the baseline, how every change worked before the change log (forced here by a"
        " compaction threshold of 0): a copy of the index, the whole vector file and gallery.json written,"
        " fsynced and hashed. **change log** appends one record and fsyncs it. Search: p50 of"
        f" {args.queries} single-vector k=10 searches with the {2 * args.changes} changes in the log (delta"
        " rows and tombstones) and after they are compacted into the base",
        "",
        "| kind | size | mode | add p50 ms | add p99 ms | remove p50 ms | remove p99 ms | add p50 vs rewrite"
        " | search p50 ms, changes logged | search p50 ms, compacted |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    baseline = {}
    for r in rows:
        if r.mode == "rewrite per change":
            baseline[(r.kind, r.size)] = r.add_p50
        ratio = (
            "baseline" if r.mode == "rewrite per change" else f"{baseline[(r.kind, r.size)] / r.add_p50:.0f}x faster"
        )
        lines.append(
            f"| {r.kind} | {r.size:,} | {r.mode} | {r.add_p50:.1f} | {r.add_p99:.1f} | {r.remove_p50:.1f}"
            f" | {r.remove_p99:.1f} | {ratio} | {r.search_logged_p50:.2f} | {r.search_base_p50:.2f} |"
        )
    report = "\n".join(lines) + "\n"
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(report)
    print(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
