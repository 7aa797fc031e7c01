"""Exact (flat L2) search of fc7-sized vectors with FAISS on the GPU against FAISS on the CPU, in one run.

For each gallery size it builds one flat L2 index of 4096-d float32 vectors on the CPU and its GPU
copy the way the service makes it (``model_store.gallery.to_search_device``: ``index_cpu_to_gpu`` when
FAISS sees a GPU), then measures for each: single-query latency p50/p99, queries/s on batches of
queries, and recall@10 of the GPU's answers against the CPU's (the same exact search; only float
rounding can reorder near-ties). Vectors are post-ReLU Gaussian (about half zeros, as fc7 is):
a flat search's speed does not depend on the values.

    python benchmarks/bench_faiss_gpu.py --sizes 100000 1000000 --output benchmarks/results/faiss_gpu.md

Without a GPU build of FAISS (faiss-cpu) it measures the CPU alone and says so.
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import time
from pathlib import Path

import faiss
import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from bench_args import command_line, write_report  # noqa: E402

from model_store.gallery import to_search_device  # noqa: E402

DIM = 4096
K = 10


def vectors(count: int, seed: int, chunk: int = 100_000) -> np.ndarray:
    out = np.empty((count, DIM), dtype=np.float32)
    rng = np.random.default_rng(seed)
    for start in range(0, count, chunk):
        block = rng.standard_normal((min(chunk, count - start), DIM), dtype=np.float32)
        np.maximum(block, 0, out=block)
        out[start : start + len(block)] = block
    return out


def measure(index: faiss.Index, queries: np.ndarray, single: int, batch: int, min_seconds: float) -> tuple:
    """(p50 ms, p99 ms of ``single`` one-query searches, queries/s on batches of ``batch``, the
    top-k ids of every query), each after a warm-up search."""
    index.search(queries[:batch], K)
    times = []
    for i in range(single):
        start = time.perf_counter()
        index.search(queries[i % len(queries)][None], K)
        times.append(time.perf_counter() - start)
    ms = np.array(times) * 1000
    done, start = 0, time.perf_counter()
    while done < batch or time.perf_counter() - start < min_seconds:
        offset = done % len(queries)
        index.search(queries[offset : offset + batch], K)
        done += batch
    qps = done / (time.perf_counter() - start)
    _, ids = index.search(queries, K)
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 99)), qps, ids


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth, strict=True)]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--queries", type=int, default=1000, help="distinct queries (recall is over all of them)")
    parser.add_argument("--single", type=int, default=200, help="single-query calls for p50/p99 (GPU)")
    parser.add_argument("--cpu-single", type=int, default=20, help="single-query calls for p50/p99 (CPU)")
    parser.add_argument("--batch", type=int, default=256, help="queries per call for queries/s")
    parser.add_argument("--seconds", type=float, default=3.0, help="least time per queries/s measurement")
    parser.add_argument("--output", type=Path, default=REPO_ROOT / "benchmarks" / "results" / "faiss_gpu.md")
    args = parser.parse_args(argv)

    gpus = faiss.get_num_gpus()
    queries = vectors(args.queries, seed=1)
    rows = [
        "| vectors | index | memory | build s | p50 ms | p99 ms | queries/s (batches of"
        f" {args.batch}) | vs CPU | recall@10 vs CPU |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for size in args.sizes:
        data = vectors(size, seed=0)
        start = time.perf_counter()
        cpu = faiss.IndexFlatL2(DIM)
        cpu.add(data)
        cpu_build = time.perf_counter() - start
        del data
        cpu_p50, cpu_p99, cpu_qps, truth = measure(cpu, queries, args.cpu_single, args.batch, args.seconds)
        gib = size * DIM * 4 / 2**30
        rows.append(
            f"| {size:,} | CPU flat | {gib:.1f} GiB | {cpu_build:.1f} | {cpu_p50:.1f} | {cpu_p99:.1f} |"
            f" {cpu_qps:,.0f} | 1.00 | 1 |"
        )
        print(rows[-1], flush=True)
        if gpus:
            start = time.perf_counter()
            gpu = to_search_device(cpu)
            gpu_build = time.perf_counter() - start
            gpu_p50, gpu_p99, gpu_qps, found = measure(gpu, queries, args.single, args.batch, args.seconds)
            rows.append(
                f"| {size:,} | GPU flat (copy of the CPU index) | {gib:.1f} GiB | {gpu_build:.1f} (copy) |"
                f" {gpu_p50:.2f} | {gpu_p99:.2f} | {gpu_qps:,.0f} | {gpu_qps / cpu_qps:.1f} |"
                f" {recall(found, truth):.4f} |"
            )
            print(rows[-1], flush=True)
            del gpu
        del cpu

    device = f"{gpus} GPU(s) seen by FAISS" if gpus else "no GPU seen by FAISS (a CPU build): CPU rows only"
    report = [
        "# FAISS flat L2 search, GPU against CPU",
        "",
        f"- date: {datetime.datetime.now().isoformat(timespec='seconds')}; faiss {faiss.__version__}; {device};"
        f" {os.cpu_count()} CPUs",
        f"- command: {command_line(__file__, argv)}",
        f"- {DIM}-d float32 vectors, post-ReLU Gaussian; k={K}; {args.queries} queries; the GPU index is"
        " `model_store.gallery.to_search_device` of the CPU one (what the service searches); recall@10 of the"
        " GPU's answers against the CPU's exact ones",
        "",
        *rows,
        "",
    ]
    write_report(args.output, "\n".join(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
