"""Gallery index kinds at scale: memory, build time, latency, queries/s and recall@10 vs exact search.

For each size (default 100k and 1M) and each index kind of ``model_store/index_kinds.py`` this
measures the index's bytes (its serialized size: what a gallery change rewrites), build time
(train + add), single-query latency p50/p99, batched queries/s and recall@10 against exact search,
on synthetic fc7-like vectors fitted to the published model's real gallery; then recall@10 of each
kind on the real vectors themselves (held-out real queries).

    nice -n 15 .venv/bin/python benchmarks/bench_index.py --sizes 100000 1000000 \\
        --out benchmarks/results/index_cpu.md

Synthetic vectors: cluster centres are real fc7 vectors moved by Gaussian noise in the real data's
top-256 principal subspace; members add more such noise plus the difference of two random real
vectors (which carries the real covariance's tail), then a threshold and ReLU (fc7 is post-ReLU)
fitted so sparsity and mean norm match the real ones. They are made in seeded chunks, so 1M x 4096
float32 (16 GB) is never held at once; exact ground truth streams the same chunks through a flat
search and merges each chunk's top 10. The approximate kinds share one SQ8 rerank store here (it is
the same for all of them); its train + add time is counted in each one's build time.
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model_store.gallery import Gallery  # noqa: E402
from model_store.index_kinds import KINDS, MAX_TRAIN, VectorIndex, default_params, factory_string  # noqa: E402

K = 10
CHUNK = 20_000
RANK = 256  # principal subspace of the noise
CLUSTER_SIZE = 30  # Caltech-101's train30: about 30 images per class
ALPHA, BETA, GAMMA = 0.7, 0.7, 0.5  # member noise, centre noise, tail noise (fitted by hand, see docs)
DEFAULT_GALLERY = Path("store/alexnet-caltech101/v1/index")


def rss_gib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 2**20
    return float("nan")


def load_real(directory: Path) -> np.ndarray:
    gallery = Gallery.load(directory)
    return np.stack([gallery.vector(item.id) for item in gallery.items()]).astype(np.float32)


@dataclass
class Synth:
    """Seeded fc7-like vectors; chunk ``i`` of a set is always the same."""

    real: np.ndarray
    basis: np.ndarray  # [RANK, d] principal directions, scaled by their standard deviation
    tau: float = 0.0
    scale: float = 1.0

    @classmethod
    def fit(cls, real: np.ndarray) -> Synth:
        centred = (real - real.mean(0)).astype(np.float64)
        w, u = np.linalg.eigh(centred @ centred.T)  # the Gram matrix: cheaper than an SVD of [n, 4096]
        w, u = w[::-1][:RANK], u[:, ::-1][:, :RANK]
        directions = (centred.T @ u / np.sqrt(w)).T  # unit principal directions
        basis = (directions * np.sqrt(w / (len(real) - 1))[:, None]).astype(np.float32)
        synth = cls(real, basis)
        lo, hi = 0.0, 2.0  # threshold for the real sparsity
        target_zero = float((real == 0).mean())
        for _ in range(14):
            synth.tau = (lo + hi) / 2
            lo, hi = (synth.tau, hi) if (synth.sample(2000, 100, 7) == 0).mean() < target_zero else (lo, synth.tau)
        norms = np.linalg.norm(synth.sample(len(real), 100, 7), axis=1)
        synth.scale = float(np.linalg.norm(real, axis=1).mean() / norms.mean())
        return synth

    def centres(self, n_clusters: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng([seed, 0])
        return rng.integers(0, len(self.real), n_clusters), rng.standard_normal((n_clusters, RANK), np.float32)

    def make(self, centres: tuple[np.ndarray, np.ndarray], count: int, seed: int, chunk: int) -> np.ndarray:
        base, zc = centres
        rng = np.random.default_rng([seed, 1, chunk])
        j = rng.integers(0, len(base), count)
        z = rng.standard_normal((count, RANK), np.float32)
        pair = rng.integers(0, len(self.real), (count, 2))
        v = self.real[base[j]] + ((BETA * zc[j] + ALPHA * z) @ self.basis)
        v += GAMMA * (self.real[pair[:, 0]] - self.real[pair[:, 1]])
        np.subtract(v, self.tau, out=v)
        np.maximum(v, 0, out=v)
        v *= self.scale
        return v

    def sample(self, count: int, n_clusters: int, seed: int) -> np.ndarray:
        return self.make(self.centres(n_clusters, seed), count, seed, 0)

    def chunks(self, n: int, seed: int):
        """(first id, vectors) chunks of a set of ``n`` vectors in clusters of about CLUSTER_SIZE."""
        centres = self.centres(max(100, n // CLUSTER_SIZE), seed)
        for i, start in enumerate(range(0, n, CHUNK)):
            yield start, self.make(centres, min(CHUNK, n - start), seed, i)


def describe(v: np.ndarray) -> dict[str, float]:
    """Statistics to compare synthetic with real vectors (on a set of the real one's size)."""
    norms = np.linalg.norm(v, axis=1)
    centred = (v - v.mean(0)).astype(np.float64)
    s2 = np.linalg.eigvalsh(centred @ centred.T)[::-1]
    cum = np.cumsum(s2) / s2.sum()
    d, _ = faiss.knn(v[:500], v, K + 1)
    d = np.sqrt(np.maximum(d[:, 1:], 0))
    sub = v[:500]
    pair = np.sqrt(np.maximum(faiss.pairwise_distances(sub, sub), 0))[np.triu_indices(500, 1)]
    return {
        "zeros": float((v == 0).mean()),
        "norm p5": float(np.percentile(norms, 5)),
        "norm p50": float(np.percentile(norms, 50)),
        "norm p95": float(np.percentile(norms, 95)),
        "variance in top 10 PCs": float(cum[9]),
        "variance in top 100 PCs": float(cum[99]),
        "NN-1 distance": float(d[:, 0].mean()),
        "NN-10 distance": float(d[:, K - 1].mean()),
        "mean pair distance": float(pair.mean()),
    }


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(
        np.mean([len(set(f[:K].tolist()) & set(t[:K].tolist())) / K for f, t in zip(found, truth, strict=True)])
    )


def timed_search(vi: VectorIndex, queries: np.ndarray, single: int, rerank: bool = True) -> dict[str, float]:
    times = []
    for q in queries[:single]:
        t0 = time.perf_counter()
        vi.search(q[None], K, rerank=rerank)
        times.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    _, ids = vi.search(queries, K, rerank=rerank)
    batch = time.perf_counter() - t0
    ms = np.array(times) * 1e3
    return {
        "p50": float(np.percentile(ms, 50)),
        "p99": float(np.percentile(ms, 99)),
        "qps": len(queries) / batch,
        "ids": ids,
    }


def file_bytes(index: faiss.Index, tmp: Path) -> tuple[int, float]:
    """(bytes, seconds) of writing ``index`` and fsyncing it: what a gallery compaction writes."""
    path = tmp / "index.faiss"
    t0 = time.perf_counter()
    faiss.write_index(index, str(path))
    with open(path, "rb") as f:
        os.fsync(f.fileno())
    seconds = time.perf_counter() - t0
    size = path.stat().st_size
    path.unlink()
    return size, seconds


def run_size(synth: Synth, n: int, args: argparse.Namespace, tmp: Path) -> list[dict]:
    d = synth.real.shape[1]
    print(f"\n== {n:,} vectors (RSS {rss_gib():.1f} GiB)", flush=True)
    queries = synth.make(synth.centres(max(100, n // CLUSTER_SIZE), args.seed), args.queries, args.seed + 1, 0)
    rows, kinds = [], {}
    for kind in args.kinds:
        gib = n * d * {"flat": 4, "sq_fp16": 2}.get(kind, 0) / 2**30
        if gib > args.max_gib:
            rows.append(
                {"n": n, "kind": kind, "skipped": f"not built: needs {gib:.1f} GiB (> --max-gib {args.max_gib})"}
            )
            continue
        params = default_params(kind, d, n)
        kinds[kind] = {"vi": VectorIndex.new(kind, d, params), "build": 0.0}
    # train the trainable kinds on a sample (the first chunks: the chunks are in random order)
    parts = []
    for _, chunk in synth.chunks(n, args.seed):
        parts.append(chunk)
        if sum(map(len, parts)) >= MAX_TRAIN:
            break
    sample = np.concatenate(parts)[:MAX_TRAIN]
    del parts
    shared_rerank, rerank_time = None, 0.0
    for kind, entry in kinds.items():
        vi = entry["vi"]
        if vi.is_trained:
            continue
        t0 = time.perf_counter()
        vi.train(sample)
        entry["build"] += time.perf_counter() - t0
        if shared_rerank is None:  # each kind trained its own (cheap: per-dimension ranges); keep one
            shared_rerank = vi.rerank
        vi.rerank = shared_rerank
        print(f"  trained {kind} in {entry['build']:.1f} s: {factory_string(kind, vi.params)}", flush=True)
    del sample
    heap = faiss.ResultHeap(len(queries), K)
    gen_time = gt_time = 0.0
    t_gen = time.perf_counter()
    for start, chunk in synth.chunks(n, args.seed):
        gen_time += time.perf_counter() - t_gen
        ids = np.arange(start, start + len(chunk), dtype=np.int64)
        for entry in kinds.values():
            t0 = time.perf_counter()
            entry["vi"].index.add_with_ids(chunk, ids)
            entry["build"] += time.perf_counter() - t0
        if shared_rerank is not None:
            t0 = time.perf_counter()
            shared_rerank.add_with_ids(chunk, ids)
            rerank_time += time.perf_counter() - t0
        t0 = time.perf_counter()
        dist, found = faiss.knn(queries, chunk, K)
        heap.add_result(dist, found + start)
        gt_time += time.perf_counter() - t0
        done = start + len(chunk)
        if done % (10 * CHUNK) == 0 or done == n:
            print(f"  added {done:,}/{n:,} (RSS {rss_gib():.1f} GiB)", flush=True)
        t_gen = time.perf_counter()
    heap.finalize()
    truth = heap.I
    print(f"  generation {gen_time:.0f} s, exact ground truth {gt_time:.0f} s", flush=True)
    rerank_bytes, rerank_write = file_bytes(shared_rerank, tmp) if shared_rerank is not None else (0, 0.0)
    for kind, entry in kinds.items():
        vi = entry["vi"]
        size, write_s = file_bytes(vi.index, tmp)
        if vi.rerank is not None:
            entry["build"] += rerank_time
            size += rerank_bytes
            write_s += rerank_write
        exhaustive = kind in ("flat", "sq_fp16")
        depths = (args.rerank or [vi.params["rerank"]]) if vi.rerank is not None else [None]
        for depth in depths:  # the rerank depth is a search-time parameter: one build, several rows
            if depth is not None:
                vi.params["rerank"] = depth
            res = timed_search(vi, queries, args.single // (4 if exhaustive else 1))
            row = {
                "n": n,
                "kind": kind,
                "factory": factory_string(kind, vi.params) + (" + SQ8 rerank" if vi.rerank is not None else ""),
                "params": {k: v for k, v in vi.params.items() if k in ("nprobe", "rerank")},
                "bytes": size,
                "build": entry["build"],
                "write": write_s,
                "p50": res["p50"],
                "p99": res["p99"],
                "qps": res["qps"],
                "recall": recall(res["ids"], truth),
            }
            if vi.rerank is not None:
                row["recall_first"] = recall(vi.search(queries, K, rerank=False)[1], truth)
            rows.append(row)
            print(f"  {kind}: {fmt_row(row)}", flush=True)
    kinds.clear()
    return rows


def real_recall(real: np.ndarray, kinds: list[str], held_out: int, seed: int) -> dict[str, float]:
    order = np.random.default_rng(seed).permutation(len(real))
    queries, base = real[order[:held_out]], real[order[held_out:]]
    _, truth = faiss.knn(queries, base, K)
    out = {}
    for kind in kinds:
        vi = VectorIndex.new(kind, real.shape[1])
        vi.add(base, np.arange(len(base), dtype=np.int64))
        out[kind] = (recall(vi.search(queries, K)[1], truth), factory_string(kind, vi.params), vi.params)
    return out


def fmt_row(row: dict) -> str:
    if "skipped" in row:
        return row["skipped"]
    first = f"{row['recall_first']:.3f}" if "recall_first" in row else "-"
    return (
        f"{row['bytes']:,} ({row['bytes'] / 2**20:,.0f} MiB) | {row['build']:.1f} | {row['write']:.1f} | "
        f"{row['p50']:.2f} | {row['p99']:.2f} | {row['qps']:,.0f} | {row['recall']:.3f} | {first}"
    )


LOAD_BEFORE = [0.0]  # set when main() starts, printed in the report


def report(args, fit, rows, real_rows, wall) -> str:
    lines = [
        "# Gallery index kinds on the CPU",
        "",
        f"Command: `{' '.join(shlex.quote(a) for a in [Path(sys.executable).name, *sys.argv])}`",
        "",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores "
        f"(FAISS threads: {faiss.omp_get_max_threads()}), Python {platform.python_version()}, "
        f"faiss {faiss.__version__}; 1-min load average before/after {LOAD_BEFORE[0]:.2f} / {os.getloadavg()[0]:.2f}"
        f" (a shared machine). Run took {wall / 60:.0f} min.",
        "",
        f"Queries: {args.queries} synthetic (same distribution, not in the gallery), k = {K}; recall@10 is "
        "against exact search over the same vectors. Latency: one query per call "
        f"({args.single} calls, {args.single // 4} for the exhaustive kinds), through "
        "`VectorIndex.search` (the gallery's code path, rerank included). Queries/s: all queries "
        "in one call. Bytes: the serialized index (first stage + SQ8 rerank store), which is what the "
        "gallery writes at a compaction and about what it holds in memory. Build: train (on a sample of at "
        f"most {MAX_TRAIN:,}) + add, in seconds. Write: writing and fsyncing the index files, which "
        "a gallery compaction does (a single add or remove is an append to the change log: see "
        "benchmarks/bench_gallery_changes.py).",
        "",
        "| vectors | kind | index | search params | bytes | build s | write s | p50 ms | p99 ms | queries/s "
        "| recall@10 | recall@10 first stage only |",
        "|---:|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        if "skipped" in row:
            lines.append(f"| {row['n']:,} | {row['kind']} | {row['skipped']} | | | | | | | | | |")
        else:
            params = ", ".join(f"{k}={v}" for k, v in row["params"].items()) or "-"
            lines.append(f"| {row['n']:,} | {row['kind']} | `{row['factory']}` | {params} | {fmt_row(row)} |")
    lines += [
        "",
        f"## Recall@10 on the real fc7 vectors ({args.real_gallery}, {args.held_out} held-out queries "
        f"against the other {fit['n_real'] - args.held_out:,})",
        "",
        "| kind | index (parameters derived from the gallery size) | recall@10 |",
        "|---|---|---:|",
    ]
    for kind, (rec, factory, params) in real_rows.items():
        extra = ", ".join(f"{k}={v}" for k, v in params.items() if k in ("nprobe", "rerank"))
        lines.append(f"| {kind} | `{factory}`{' ' + extra if extra else ''} | {rec:.3f} |")
    lines += [
        "",
        f"## How well the synthetic vectors match the real ones ({fit['n_real']:,} of each, 100 clusters)",
        "",
        "| statistic | real fc7 | synthetic |",
        "|---|---:|---:|",
    ]
    for key, value in fit["real"].items():
        lines.append(f"| {key} | {value:.3f} | {fit['synth'][key]:.3f} |")
    lines += [
        "",
        f"Generator: tau = {fit['tau']:.3f}, scale = {fit['scale']:.3f}, alpha = {ALPHA}, beta = {BETA}, "
        f"gamma = {GAMMA}, noise rank {RANK}, clusters of about {CLUSTER_SIZE}.",
        "",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--kinds", nargs="+", default=list(KINDS), choices=KINDS)
    parser.add_argument("--queries", type=int, default=500, help="queries with exact ground truth")
    parser.add_argument("--single", type=int, default=200, help="single-query calls for p50/p99")
    parser.add_argument("--max-gib", type=float, default=6.0, help="skip flat/sq_fp16 above this size")
    parser.add_argument("--real-gallery", type=Path, default=DEFAULT_GALLERY)
    parser.add_argument("--held-out", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--rerank", type=int, nargs="+", default=None, help="rerank depths to measure (default: each kind's own)"
    )
    parser.add_argument("--out", type=Path, default=None, help="also write the markdown table here")
    args = parser.parse_args()
    LOAD_BEFORE[0] = os.getloadavg()[0]
    started = time.perf_counter()
    real = load_real(args.real_gallery)
    print(f"real fc7: {real.shape}; fitting the generator", flush=True)
    synth = Synth.fit(real)
    fit = {
        "n_real": len(real),
        "real": describe(real),
        "synth": describe(synth.sample(len(real), 100, 99)),
        "tau": synth.tau,
        "scale": synth.scale,
    }
    print("fitted:", {k: f"{v:.3f} / {fit['synth'][k]:.3f}" for k, v in fit["real"].items()}, flush=True)
    real_rows = real_recall(real, args.kinds, args.held_out, args.seed)
    print("real recall:", {k: round(v[0], 3) for k, v in real_rows.items()}, flush=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-index-") as tmp:
        for n in args.sizes:
            rows += run_size(synth, n, args, Path(tmp))
            text = report(args, fit, rows, real_rows, time.perf_counter() - started)
            if args.out:  # after each size, so a long run leaves what it measured so far
                args.out.parent.mkdir(parents=True, exist_ok=True)
                args.out.write_text(text)
    print("\n" + text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
