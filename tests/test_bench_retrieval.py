"""benchmarks/bench_retrieval.py and figure_retrieval.py: the ranking metrics against hand-computed
and brute-force values, and both scripts end to end on the tiny published model (real ONNX
Runtime, real FAISS gallery, real Caltech-101 JPEGs)."""

from __future__ import annotations

import itertools
import json
import math
import re
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import bench_retrieval as br  # noqa: E402
import figure_retrieval as fr  # noqa: E402

from model_store.store import load_version  # noqa: E402
from service.runtime import OnnxModel  # noqa: E402

GALLERY_PER_CLASS = 4  # the tiny_model fixture's gallery (tests/conftest.py); checked below against its size

# --- metrics ---------------------------------------------------------------------------------------


def test_precision_and_ap_of_a_ranking_without_ties():
    d, rel = [0.1, 0.2, 0.3, 0.4, 0.5], [True, False, True, False, False]
    assert br.precision_at_k(d, rel, 1) == 1.0
    assert br.precision_at_k(d, rel, 2) == 0.5
    assert br.precision_at_k(d, rel, 3) == pytest.approx(2 / 3)
    assert br.precision_at_k(d, rel, 5) == pytest.approx(2 / 5)
    assert br.average_precision(d, rel) == pytest.approx((1 / 1 + 2 / 3) / 2)
    # the only relevant item last
    assert br.average_precision([1, 2, 3, 4], [False, False, False, True]) == pytest.approx(1 / 4)
    assert br.average_precision([1, 2, 3], [True, True, True]) == 1.0


def test_k_beyond_the_ranking_counts_missing_places_as_misses():
    d, rel = [1.0, 2.0, 3.0], [True, True, False]
    assert br.precision_at_k(d, rel, 3) == pytest.approx(2 / 3)
    assert br.precision_at_k(d, rel, 10) == pytest.approx(2 / 10)
    assert br.precision_at_k([], [], 5) == 0.0


def test_ties_count_at_their_mean_over_orders():
    # (rel, irrelevant) tied at 1, then a relevant item: the orders r n r and n r r, equally likely
    d, rel = [1.0, 1.0, 2.0], [True, False, True]
    assert br.precision_at_k(d, rel, 1) == 0.5
    assert br.precision_at_k(d, rel, 2) == 0.5
    assert br.precision_at_k(d, rel, 3) == pytest.approx(2 / 3)
    assert br.average_precision(d, rel) == pytest.approx(((1 + 2 / 3) / 2 + (1 / 2 + 2 / 3) / 2) / 2)  # 17/24
    # ties among relevant items only, or irrelevant ones only, change nothing
    assert br.average_precision([1, 1, 2, 3], [True, True, False, True]) == pytest.approx((1 + 1 + 3 / 4) / 3)
    assert br.average_precision([1, 2, 2, 3], [True, False, False, True]) == pytest.approx((1 + 2 / 4) / 2)


def _plain_metrics(relevant: tuple[bool, ...], ks: tuple[int, ...]) -> list[float]:
    """P@k and AP of one fully ordered ranking, straight from the definitions."""
    hits = np.cumsum(relevant)
    ap = sum(hits[i] / (i + 1) for i, r in enumerate(relevant) if r) / max(1, sum(relevant))
    return [hits[min(k, len(relevant)) - 1] / k for k in ks] + [ap]


@pytest.mark.parametrize("seed", range(6))
def test_tied_metrics_equal_the_mean_over_every_order_of_the_tied_items(seed: int):
    rng = np.random.default_rng(seed)
    distances = np.sort(rng.integers(0, 3, size=7)).astype(float)  # 7 items in about 3 runs of ties
    relevant = rng.random(7) < 0.5
    relevant[rng.integers(7)] = True
    ks = (1, 2, 4, 5, 9)
    runs = [np.flatnonzero(distances == v) for v in np.unique(distances)]
    combos = itertools.product(*(itertools.permutations(run) for run in runs))
    orders = [tuple(bool(relevant[i]) for run in combo for i in run) for combo in combos]
    expected = np.mean([_plain_metrics(order, ks) for order in orders], axis=0)
    got = br.ranking_metrics(distances, relevant, ks)
    assert [got[f"P@{k}"] for k in ks] + [got["mAP"]] == pytest.approx(expected.tolist())


def test_all_tied_is_the_analytical_chance_of_a_random_ranking():
    n, r = 20, 4
    expected_ap = (r - 1) / (n - 1) + (n - r) / (n * (n - 1)) * sum(1 / i for i in range(1, n + 1))
    metrics = br.ranking_metrics(np.zeros(n), np.arange(n) < r)
    assert metrics == pytest.approx({"P@1": r / n, "P@5": r / n, "P@10": r / n, "mAP": expected_ap})


def test_bad_rankings_are_refused():
    assert math.isnan(br.average_precision([1, 2], [False, False]))
    assert br.precision_at_k([1, 2], [False, False], 1) == 0.0
    with pytest.raises(ValueError, match="sorted"):
        br.precision_at_k([2, 1], [True, False], 1)
    with pytest.raises(ValueError, match="k must be"):
        br.precision_at_k([1, 2], [True, False], 0)
    with pytest.raises(ValueError, match="one distance per"):
        br.average_precision([1, 2], [True])


# --- the vectors -----------------------------------------------------------------------------------


def test_query_vectors_are_the_gallery_builds_vectors(tiny_model):
    """fc7 of a gallery item's own image, made as the benchmark makes a query's, is its stored vector."""
    version = load_version(tiny_model.store_root, tiny_model.name)
    view = br.GalleryView.load(version)
    paths = view.source_paths(tiny_model.data_root)[:3]
    fc7, pixels = br.encode(paths, version.preprocessor(), OnnxModel(version))
    stored = np.stack([view.gallery.vector(int(i)) for i in view.ids[:3]])
    assert fc7 is not None and fc7.shape == stored.shape
    np.testing.assert_allclose(fc7, stored, rtol=1e-4, atol=1e-4 * float(np.abs(stored).max()))
    # pixels: the 224 centre crop, before mean subtraction, in 7x7 block means
    pre = version.preprocessor()
    square = pre.square(paths[0])
    top = (pre.resize - pre.crop) // 2
    crop = square[top : top + pre.crop, top : top + pre.crop].astype(np.float64)
    blocks = crop.reshape(32, pre.crop // 32, 32, pre.crop // 32, 3).mean(axis=(1, 3))
    assert pixels.shape == (3, 32 * 32 * 3)
    np.testing.assert_allclose(pixels[0], blocks.reshape(-1), atol=1.0)  # Pillow averages in fixed point, to uint8


# --- the scripts end to end ------------------------------------------------------------------------


def _table(report: str) -> dict[str, list[float]]:
    rows = {}
    for line in report.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 5 and re.fullmatch(r"[0-9.]+", cells[1]):
            rows[cells[0]] = [float(c) for c in cells[1:]]
    return rows


def _run(tiny_model, out: Path, *extra: str) -> tuple[str, dict]:
    argv = ["--store-root", str(tiny_model.store_root), "--model-name", tiny_model.name,
            "--data-root", str(tiny_model.data_root), "--out", str(out), *extra]  # fmt: skip
    assert br.main(argv) == 0
    return out.read_text(), json.loads(out.with_suffix(".json").read_text())


def test_benchmark_reports_fc7_pixels_and_chance(tiny_model, tmp_path: Path):
    report, raw = _run(tiny_model, tmp_path / "retrieval.md", "--limit", "6")
    table = _table(report)
    assert list(table) == list(br.METHODS.values())
    for values in table.values():
        assert all(0.0 <= v <= 1.0 for v in values)
    # every class has GALLERY_PER_CLASS of the gallery's items: chance is that fraction at every k
    classes = len(tiny_model.classes)
    n, r = GALLERY_PER_CLASS * classes, GALLERY_PER_CLASS
    chance_ap = (r - 1) / (n - 1) + (n - r) / (n * (n - 1)) * sum(1 / i for i in range(1, n + 1))
    assert raw["metrics"]["chance"] == pytest.approx({"P@1": r / n, "P@5": r / n, "P@10": r / n, "mAP": chance_ap})
    assert table[br.METHODS["chance"]] == pytest.approx([r / n] * 3 + [chance_ap], abs=5e-4)
    for name in ("fc7", "pixels"):
        assert table[br.METHODS[name]] == pytest.approx([raw["metrics"][name][m] for m in br.METRICS], abs=5e-4)
    assert (raw["queries"]["split"], raw["queries"]["count"], raw["queries"]["limit"]) == ("test30", 6, 6)
    assert raw["gallery"]["items"] == n
    ratio = raw["metrics"]["fc7"]["P@5"] / raw["metrics"]["pixels"]["P@5"]
    assert raw["fc7_p5_over_pixels_p5"] == pytest.approx(ratio)
    assert f"{ratio:.2f}x" in report
    assert "python benchmarks/bench_retrieval.py --store-root" in report
    assert "machine: " in report and f"{tiny_model.name}/v1" in report and '"split": "train30"' in report


def test_a_query_is_not_its_own_neighbour(tiny_model, tmp_path: Path):
    """Queried with the gallery's own split, each query's own image leaves its ranking."""
    _, raw = _run(tiny_model, tmp_path / "self.md", "--query-split", "train30", "--limit", "5")
    n, r = GALLERY_PER_CLASS * len(tiny_model.classes), GALLERY_PER_CLASS
    assert raw["metrics"]["chance"]["P@1"] == pytest.approx((r - 1) / (n - 1))  # the first image of each class
    assert raw["metrics"]["fc7"]["P@10"] <= (r - 1) / 10 + 1e-9


def test_figure_rows_are_the_nearest_gallery_items_labelled(tiny_model, tmp_path: Path):
    version = load_version(tiny_model.store_root, tiny_model.name)
    view = br.GalleryView.load(version)
    classes = sorted(tiny_model.classes)
    queries = fr.pick_queries(tiny_model.data_root, "test30", classes, rows=5, seed=3)
    assert queries == fr.pick_queries(tiny_model.data_root, "test30", classes, rows=5, seed=3)
    assert sorted(label for label, _ in queries) == classes  # five different classes
    pre, model = version.preprocessor(), OnnxModel(version)
    rows = fr.figure_rows(view, model, pre, tiny_model.data_root, queries, neighbours=6)
    fc7, _ = br.encode([path for _, path in queries], pre, model)
    stored = np.stack([view.gallery.vector(int(i)) for i in view.ids])
    nearest = np.argsort(((fc7[:, None, :] - stored[None]) ** 2).sum(-1), axis=1)[:, :6]
    image = fr.draw_figure(rows, tile=64)
    assert image.size == fr.figure_size(5, 7, 64)
    for r, ((label, _), row) in enumerate(zip(queries, rows, strict=True)):
        assert [cell.label for cell in row[1:]] == view.labels[nearest[r]].tolist()
        for c, cell in enumerate(row):
            want = fr.QUERY if c == 0 else fr.MATCH if cell.label == label else fr.MISMATCH
            assert cell.color == want
            assert image.getpixel(fr.tile_origin(r, c, 64)) == want  # the tile's frame


def test_figure_script_writes_the_png(tiny_model, tmp_path: Path):
    out = tmp_path / "figure.png"
    argv = ["--store-root", str(tiny_model.store_root), "--model-name", tiny_model.name,
            "--data-root", str(tiny_model.data_root), "--tile", "48", "--out", str(out)]  # fmt: skip
    assert fr.main(argv) == 0
    with Image.open(out) as png:
        assert png.format == "PNG" and png.size == fr.figure_size(5, 7, 48)
