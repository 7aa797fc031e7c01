"""Retrieval quality, measured (the paper's Figure 4 claim): fc7 neighbours share the query's class
far more often than raw-pixel neighbours do.

Every image of a query split (by default the test split of the model's training split: test30 for
train30, test20 for train80) is ranked against the whole published gallery (the version's
``index/``, built by training/index.py from the training split) three ways, and precision@1, @5,
@10 and mAP (over the full ranking) are reported for each, in one run:

- fc7: the service's own search (``Gallery.search``, exact L2 on a flat gallery) with the query's
  centre-crop fc7 vector from the published model.onnx (ONNX Runtime through the service's
  ``OnnxModel``, the project's ``Preprocessor``, as training/index.py makes the gallery's vectors);
- pixels: Euclidean distance between 32x32 RGB thumbnails (the same 224 centre crop, before mean
  subtraction, averaged over 7x7 blocks), searched with the gallery's own exact FAISS index type;
- chance: the expected value under a uniformly random ranking, computed analytically from the
  gallery's class counts (the same metric functions with every gallery item tied; no sampling).

Ties are scored as the mean over every order of the tied items (McSherry and Najork, ECIR 2008), so
a number never depends on how FAISS happens to order equal distances. A gallery item with the
query's own source image (only when the query split overlaps the gallery's) is left out of that
query's ranking. Precision@k divides by k, as trec_eval does: with fewer than k gallery items the
missing places count as misses.

    python benchmarks/bench_retrieval.py --store-root store --model-name alexnet-caltech101 \\
        --out benchmarks/results/retrieval.md

writes the markdown report and the raw numbers beside it (``retrieval.json``).
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import bench_args  # noqa: E402
from bench_service import machine  # noqa: E402

from model_store.gallery import GALLERY_FEATURE, Gallery, add_vectors, euclidean, new_index, search_index  # noqa: E402
from model_store.preprocessing import Preprocessor, crop_offsets  # noqa: E402
from model_store.store import ModelVersion, load_version  # noqa: E402
from service.retrieval import query_vector  # noqa: E402
from service.runtime import OnnxModel  # noqa: E402
from training.data import TEST_SPLIT_OF  # noqa: E402
from training.index import gallery_images  # noqa: E402

KS = (1, 5, 10)
METRICS = tuple(f"P@{k}" for k in KS) + ("mAP",)
METHODS = {
    "fc7": "fc7 Euclidean (the service's search)",
    "pixels": "raw pixels, 32x32 RGB, Euclidean",
    "chance": "chance (expected value of a random ranking)",
}
PIXEL_SIDE = 32
TARGET_RATIO = 3.0  # issue 16: fc7 P@5 at least 3x the pixels' P@5
BATCH = 32
SEARCH_CHUNK = 64  # queries per gallery search: full rankings of a large gallery are big


# --- metrics of one ranking: distances nearest first, and which items are relevant -------------


@dataclass(frozen=True)
class _TieGroups:
    """A ranking as runs of equal distance: where each starts, its size, the relevant items
    before it and inside it, and the total number of relevant items."""

    starts: np.ndarray
    sizes: np.ndarray
    before: np.ndarray
    inside: np.ndarray
    relevant: int
    length: int


def _tie_groups(distances: Sequence[float] | np.ndarray, relevant: Sequence[bool] | np.ndarray) -> _TieGroups:
    d = np.asarray(distances, dtype=np.float64)
    rel = np.asarray(relevant, dtype=bool)
    if d.ndim != 1 or d.shape != rel.shape:
        raise ValueError(f"expected one distance per relevance flag, got shapes {d.shape} and {rel.shape}")
    if np.isnan(d).any() or (d[1:] < d[:-1]).any():
        raise ValueError("distances must be sorted nearest first (non-decreasing)")
    n = len(d)
    starts = np.flatnonzero(np.r_[True, d[1:] != d[:-1]]) if n else np.zeros(0, np.int64)
    sizes = np.diff(np.r_[starts, n])
    cumulative = np.r_[0, np.cumsum(rel)]
    before = cumulative[starts]
    return _TieGroups(starts, sizes, before, cumulative[starts + sizes] - before, int(cumulative[-1]), n)


def _precision(groups: _TieGroups, k: int) -> float:
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if k >= groups.length:
        return groups.relevant / k
    g = int(np.searchsorted(groups.starts, k - 1, side="right")) - 1  # the run holding place k
    taken = k - groups.starts[g]  # of its items, this many are in the top k (any of them, equally likely)
    return float(groups.before[g] + taken * groups.inside[g] / groups.sizes[g]) / k


def _average_precision(groups: _TieGroups) -> float:
    if groups.relevant == 0:
        return float("nan")
    s, t, c, r = (a.astype(np.float64) for a in (groups.starts, groups.sizes, groups.before, groups.inside))
    harmonic = np.r_[0.0, np.cumsum(1.0 / np.arange(1, groups.length + 1))]
    # A relevant item of a run at place s+j (j uniform in 1..t) has c + 1 + (j-1)(r-1)/(t-1) relevant
    # items at or above it on average; summing (A + B(j-1)) / (s+j) over j gives the closed form.
    a = c + 1
    b = np.divide(r - 1, t - 1, out=np.zeros_like(r), where=t > 1)
    end = (groups.starts + groups.sizes).astype(np.int64)
    per_run = r / t * ((a - b * (s + 1)) * (harmonic[end] - harmonic[groups.starts]) + b * t)
    return float(per_run.sum() / groups.relevant)


def precision_at_k(distances: Sequence[float] | np.ndarray, relevant: Sequence[bool] | np.ndarray, k: int) -> float:
    """Relevant items among the first ``k`` / k; a run of tied distances across place k counts at
    its mean (its relevant fraction per place), places past the ranking's end count as misses."""
    return _precision(_tie_groups(distances, relevant), k)


def average_precision(distances: Sequence[float] | np.ndarray, relevant: Sequence[bool] | np.ndarray) -> float:
    """Mean over the relevant items of the precision at each one's place; with ties, its expected
    value over every order of the tied items. NaN when no item is relevant."""
    return _average_precision(_tie_groups(distances, relevant))


def ranking_metrics(
    distances: Sequence[float] | np.ndarray, relevant: Sequence[bool] | np.ndarray, ks: Sequence[int] = KS
) -> dict[str, float]:
    """{"P@k": ..., "mAP": AP} of one ranking (the mean over queries is taken later)."""
    groups = _tie_groups(distances, relevant)
    return {f"P@{k}": _precision(groups, k) for k in ks} | {"mAP": _average_precision(groups)}


# --- images -> the vectors each method ranks with ---------------------------------------------------


def pixel_vector(preprocessor: Preprocessor, square: np.ndarray) -> np.ndarray:
    """float32 [32*32*3]: the model's centre crop of ``square`` (uint8, before mean subtraction),
    each of its 32x32 blocks averaged (Pillow's BOX filter)."""
    top, left = crop_offsets(preprocessor.resize, preprocessor.crop)[4]  # the centre patch
    crop = square[top : top + preprocessor.crop, left : left + preprocessor.crop]
    small = Image.fromarray(np.ascontiguousarray(crop)).resize((PIXEL_SIDE, PIXEL_SIDE), Image.Resampling.BOX)
    return np.asarray(small, dtype=np.float32).reshape(-1)


def fc7_vectors(model: OnnxModel, preprocessor: Preprocessor, squares: Sequence[np.ndarray]) -> np.ndarray:
    """[n, feature_dim]: each square's retrieval vector as the service and the gallery build make it."""
    crops = [preprocessor.crops_from_square(square, GALLERY_FEATURE) for square in squares]
    _, features = model.run(np.concatenate(crops))
    rows = np.cumsum([0] + [len(c) for c in crops])
    return np.stack([query_vector(features[a:b], GALLERY_FEATURE) for a, b in zip(rows[:-1], rows[1:], strict=True)])


def encode(
    paths: Sequence[Path], preprocessor: Preprocessor, model: OnnxModel | None, workers: int = 4
) -> tuple[np.ndarray | None, np.ndarray]:
    """(fc7 vectors or None without ``model``, pixel vectors) of image files, each decoded once."""
    fc7, pixels = [], []
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for start in range(0, len(paths), BATCH):
            squares = list(pool.map(preprocessor.square, paths[start : start + BATCH]))
            pixels.append(np.stack([pixel_vector(preprocessor, sq) for sq in squares]))
            if model is not None:
                fc7.append(fc7_vectors(model, preprocessor, squares))
    pixel_dim = 3 * PIXEL_SIDE * PIXEL_SIDE
    return (np.concatenate(fc7) if model is not None and fc7 else None), (
        np.concatenate(pixels) if pixels else np.zeros((0, pixel_dim), np.float32)
    )


# --- queries and the gallery ------------------------------------------------------------------------


def training_split(version: ModelVersion) -> str | None:
    return version.manifest.recipe.get("config", {}).get("split")


def default_query_split(version: ModelVersion) -> str:
    """The test split of the version's training split (training/data.py's TEST_SPLIT_OF)."""
    split = training_split(version)
    if split not in TEST_SPLIT_OF:
        raise SystemExit(f"the manifest's recipe names training split {split!r}, which has no known test split;"
                         " pass --query-split")  # fmt: skip
    return TEST_SPLIT_OF[split]


def query_images(
    data_root: Path, split: str, classes: Sequence[str], limit: int | None = None
) -> tuple[list[tuple[str, Path]], int]:
    """((class, path) of the split's images whose class is in ``classes``, the number left out for
    not being); ordered round-robin over the classes (every class's first image, then every second,
    ...), so that ``limit`` keeps a spread of classes."""
    wanted = set(classes)
    images = gallery_images(data_root, split)
    kept = [(label, path) for label, path in images if label in wanted]
    seen: dict[str, int] = {}
    place = []
    for label, _ in kept:
        place.append(seen.get(label, 0))
        seen[label] = place[-1] + 1
    order = sorted(range(len(kept)), key=lambda i: (place[i], i))
    chosen = [kept[i] for i in order]
    return (chosen[:limit] if limit is not None else chosen), len(images) - len(kept)


@dataclass(frozen=True)
class GalleryView:
    """The published gallery as the benchmark ranks it: its items in a fixed order."""

    gallery: Gallery
    ids: np.ndarray  # item ids, in the order of labels and sources
    labels: np.ndarray  # str
    sources: list[str | None]

    @classmethod
    def load(cls, version: ModelVersion) -> GalleryView:
        gallery = Gallery.load(version.index_dir)
        items = sorted(gallery.items(), key=lambda item: item.id)
        if not items:
            raise SystemExit(f"{version.index_dir} holds no gallery items: build it with `alexnet index`")
        ids = np.array([item.id for item in items], np.int64)
        return cls(gallery, ids, np.array([item.label for item in items]), [item.source for item in items])

    def source_paths(self, data_root: Path) -> list[Path]:
        paths = [Path(data_root) / source if source else None for source in self.sources]
        missing = [str(s) for s, p in zip(self.sources, paths, strict=True) if p is None or not p.is_file()]
        if missing:
            raise SystemExit(
                f"{len(missing)} gallery items have no source image under {data_root} (e.g. {missing[:3]}): the"
                " pixel baseline decodes the gallery's own images; pass --data-root of the data it was built from"
            )
        return paths  # type: ignore[return-value]

    def fc7_rankings(self, queries: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(distances, positions in this view) of every gallery item, nearest first, per query:
        the service's own search asked for the whole gallery (items an approximate index does
        not return are appended, tied, at infinite distance)."""
        n = len(self.ids)
        position = {int(item_id): i for i, item_id in enumerate(self.ids)}
        for start in range(0, len(queries), SEARCH_CHUNK):
            for hits in self.gallery.search(queries[start : start + SEARCH_CHUNK], k=n):
                found = np.array([position[hit.item.id] for hit in hits], np.int64)
                distances = np.array([hit.distance for hit in hits], np.float64)
                if len(found) < n:
                    rest = np.setdiff1d(np.arange(n), found)
                    found, distances = np.r_[found, rest], np.r_[distances, np.full(len(rest), np.inf)]
                yield distances, found


def pixel_rankings(gallery_pixels: np.ndarray, queries: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(Euclidean distances, gallery positions) of every gallery item per query, nearest first,
    from an exact FAISS index of the kind a flat gallery uses."""
    index = new_index(gallery_pixels.shape[1])
    add_vectors(index, gallery_pixels, np.arange(len(gallery_pixels)))
    for start in range(0, len(queries), SEARCH_CHUNK):
        squared, found = search_index(index, queries[start : start + SEARCH_CHUNK], len(gallery_pixels))
        yield from zip(euclidean(squared).astype(np.float64), found, strict=True)


# --- the run --------------------------------------------------------------------------------------


def evaluate(
    view: GalleryView,
    query_labels: Sequence[str],
    query_sources: Sequence[str],
    rankings: dict[str, Iterator[tuple[np.ndarray, np.ndarray]]],
) -> dict[str, np.ndarray]:
    """Per method, [queries, len(METRICS)] of each query's metrics; chance from class counts."""
    sources = np.array([s or "" for s in view.sources])
    scores: dict[str, list[list[float]]] = {name: [] for name in (*rankings, "chance")}
    iterators = {name: iter(r) for name, r in rankings.items()}
    for label, source in zip(query_labels, query_sources, strict=True):
        for name, ranking in iterators.items():
            distances, positions = next(ranking)
            keep = sources[positions] != source  # the query's own image, if the gallery holds it
            metrics = ranking_metrics(distances[keep], view.labels[positions[keep]] == label)
            scores[name].append([metrics[m] for m in METRICS])
        others = sources != source
        chance = ranking_metrics(np.zeros(int(others.sum())), view.labels[others] == label)
        scores["chance"].append([chance[m] for m in METRICS])
    for name, ranking in iterators.items():
        if next(ranking, None) is not None:
            raise RuntimeError(f"the {name} search returned more rankings than there are queries")
    return {name: np.array(rows, dtype=np.float64).reshape(-1, len(METRICS)) for name, rows in scores.items()}


def means(per_query: np.ndarray) -> dict[str, float]:
    return {m: float(np.nanmean(per_query[:, i])) if len(per_query) else float("nan") for i, m in enumerate(METRICS)}


def gallery_coverage(view: GalleryView, data_root: Path, split: str | None) -> str:
    """How the gallery relates to the model's training split."""
    if not split or not (Path(data_root) / "splits" / f"{split}.txt").is_file():
        return f"{len(view.ids)} items"
    listed = {path.relative_to(data_root).as_posix() for _, path in gallery_images(data_root, split)}
    inside = sum(source in listed for source in view.sources)
    if inside == len(view.ids) == len(listed):
        return f"{len(view.ids)} items: exactly the training split {split}"
    return f"{len(view.ids)} items, {inside} of them from the training split {split} (which has {len(listed)})"


def fmt(x: float) -> str:
    return "n/a" if x != x else f"{x:.3f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    bench_args.add_model_args(parser)  # --store-root, --model-name, --version, --data-root (--data)
    parser.add_argument("--query-split", default=None, help="default: the test split of the model's training split")
    parser.add_argument("--limit", type=int, default=None, help="at most this many queries (spread over classes)")
    parser.add_argument("--workers", type=int, default=4, help="image decoding threads")
    parser.add_argument("--out", "--output", dest="out", type=Path, default=Path("benchmarks/results/retrieval.md"))
    args = parser.parse_args(argv)
    if args.limit is not None and args.limit < 1:
        parser.error("--limit must be >= 1")
    started = time.perf_counter()

    version = load_version(args.store_root, args.model_name, args.version)
    preprocessor = version.preprocessor()
    model = OnnxModel(version)
    view = GalleryView.load(version)
    query_split = args.query_split or default_query_split(version)
    queries, left_out = query_images(args.data_root, query_split, sorted(set(view.labels.tolist())), args.limit)
    if not queries:
        raise SystemExit(f"split {query_split!r} has no images of the gallery's classes")

    query_fc7, query_pixels = encode([path for _, path in queries], preprocessor, model, args.workers)
    _, gallery_pixels = encode(view.source_paths(args.data_root), preprocessor, None, args.workers)
    assert query_fc7 is not None
    per_query = evaluate(
        view,
        [label for label, _ in queries],
        [path.relative_to(args.data_root).as_posix() for _, path in queries],
        {"fc7": view.fc7_rankings(query_fc7), "pixels": pixel_rankings(gallery_pixels, query_pixels)},
    )
    results = {name: means(rows) for name, rows in per_query.items()}
    ratio = results["fc7"]["P@5"] / results["pixels"]["P@5"] if results["pixels"]["P@5"] > 0 else float("inf")
    seconds = time.perf_counter() - started

    manifest = version.manifest
    command = bench_args.command_line(__file__, argv)
    coverage = gallery_coverage(view, args.data_root, training_split(version))
    classes = len(set(view.labels.tolist()))
    raw = {
        "command": command,
        "machine": machine(),
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "model": {
            "name": manifest.name,
            "version": manifest.version,
            "created": manifest.created,
            "variant": manifest.variant,
            "recipe": manifest.recipe,
        },
        "onnx_provider": model.provider,
        "gallery": {
            "items": len(view.ids),
            "classes": classes,
            "index_kind": view.gallery.index_kind,
            "coverage": coverage,
        },
        "queries": {
            "split": query_split,
            "count": len(queries),
            "limit": args.limit,
            "left_out_not_in_gallery_classes": left_out,
        },
        "chance": "analytical: the expected value of a uniformly random ranking of the gallery",
        "ties": "expected value over the orders of tied items",
        "metrics": results,
        "fc7_p5_over_pixels_p5": ratio,
        "target_ratio": TARGET_RATIO,
        "seconds": round(seconds, 1),
    }
    met = "met" if ratio >= TARGET_RATIO else "NOT met"
    lines = [
        "# Retrieval quality: fc7 against raw pixels (the paper's Figure 4, measured)",
        "",
        f"- command: `{command}`",
        f"- machine: {raw['machine']}",
        f"- date: {raw['date']}; {seconds:.1f} s in all (ONNX Runtime: {model.provider})",
        f"- model: {manifest.name}/{manifest.version} (created {manifest.created}, variant {manifest.variant},"
        f" {manifest.num_classes} classes); its recipe is at the end",
        f"- gallery: the version's published index ({view.gallery.index_kind}), {coverage}, {classes} classes",
        f"- queries: {len(queries)} images of split {query_split}"
        + (f" (--limit {args.limit}, spread over the classes)" if args.limit else "")
        + (f"; {left_out} images of classes the gallery lacks left out" if left_out else ""),
        "",
        "| ranking | P@1 | P@5 | P@10 | mAP |",
        "|---|---:|---:|---:|---:|",
        *[f"| {METHODS[name]} | " + " | ".join(fmt(results[name][m]) for m in METRICS) + " |" for name in METHODS],
        "",
        f"fc7 P@5 / pixel P@5 = **{ratio:.2f}x** (issue 16's target: >= {TARGET_RATIO:g}x, {met}).",
        "",
        "How: each query's centre-crop fc7 vector (published model.onnx, ONNX Runtime, the project's"
        " Preprocessor) is searched with the gallery's own `Gallery.search` for the whole gallery; the pixel"
        " baseline ranks 32x32 RGB block means of the same 224 centre crop (before mean subtraction) by"
        " Euclidean distance (exact FAISS); chance is the analytical expected value of a random ranking given"
        " the gallery's class counts. P@k divides by k; mAP is over the full ranking; tied distances count at"
        " their expected value over the tied items' orders. Raw numbers: "
        f"`{args.out.with_suffix('.json').name}`.",
        "",
        "Recipe (manifest):",
        "",
        "```json",
        json.dumps(manifest.recipe, indent=2),
        "```",
        "",
    ]
    bench_args.write_report(args.out, "\n".join(lines))
    args.out.with_suffix(".json").write_text(json.dumps(raw, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
