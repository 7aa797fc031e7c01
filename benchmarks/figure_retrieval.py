"""The paper's Figure 4 for a published model: test images (one per row, from different classes)
followed by their nearest gallery images in fc7 space, as the service finds them.

Queries are picked deterministically: ``--seed`` draws ``--rows`` distinct classes (of those in both
the query split and the gallery) and one image of each, or ``--images`` names them (paths under
``images/``). Each query's centre-crop fc7 vector is made as benchmarks/bench_retrieval.py makes it
and searched with the gallery's own ``Gallery.search``. A tile shows the 224 centre crop the network
saw (the gallery's thumbnail where its source image is not under --data-root), labelled with its
class and distance, framed green when the class is the query's and red when not.

    python benchmarks/figure_retrieval.py --store-root store --model-name alexnet-caltech101 \\
        --out docs/retrieval-figure4.png
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import bench_args  # noqa: E402
from bench_retrieval import GalleryView, default_query_split, encode, query_images  # noqa: E402

from model_store.preprocessing import Preprocessor, crop_offsets  # noqa: E402
from model_store.store import load_version  # noqa: E402
from service.runtime import OnnxModel  # noqa: E402

MATCH = (0, 150, 0)
MISMATCH = (210, 0, 0)
QUERY = (0, 0, 0)
BACKGROUND = (255, 255, 255)
PAD = 8  # around every cell
BORDER = 4  # the coloured frame inside a cell, around the image
TEXT_H = 30  # two lines of text under each tile
HEADER_H = 20  # the column titles


@dataclass(frozen=True)
class Tile:
    image: Image.Image  # RGB, any size (scaled to the tile)
    label: str
    caption: str  # the second line: "query" or the distance
    color: tuple[int, int, int]


def figure_size(rows: int, columns: int, tile: int) -> tuple[int, int]:
    """(width, height) in pixels of a figure of ``rows`` x ``columns`` tiles of ``tile`` px."""
    return columns * (tile + 2 * PAD), HEADER_H + rows * (tile + TEXT_H + 2 * PAD)


def tile_origin(row: int, column: int, tile: int) -> tuple[int, int]:
    """(x, y) of the top-left corner of a tile's framed image."""
    return column * (tile + 2 * PAD) + PAD, HEADER_H + row * (tile + TEXT_H + 2 * PAD) + PAD


def draw_figure(rows: list[list[Tile]], tile: int = 160) -> Image.Image:
    columns = max(len(row) for row in rows)
    canvas = Image.new("RGB", figure_size(len(rows), columns, tile), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default(size=12)
    for c in range(columns):
        x, _ = tile_origin(0, c, tile)
        draw.text((x, 4), "query" if c == 0 else f"neighbour {c}", fill=QUERY, font=font)
    inner = tile - 2 * BORDER
    for r, row in enumerate(rows):
        for c, cell in enumerate(row):
            x, y = tile_origin(r, c, tile)
            draw.rectangle((x, y, x + tile - 1, y + tile - 1), fill=cell.color)
            canvas.paste(cell.image.convert("RGB").resize((inner, inner), Image.Resampling.BILINEAR),
                         (x + BORDER, y + BORDER))  # fmt: skip
            draw.text((x, y + tile + 2), cell.label, fill=cell.color, font=font)
            draw.text((x, y + tile + 16), cell.caption, fill=QUERY, font=font)
    return canvas


def centre_crop(preprocessor: Preprocessor, path: Path) -> Image.Image:
    """The 224 centre crop the network sees (before mean subtraction)."""
    square = preprocessor.square(path)
    top, left = crop_offsets(preprocessor.resize, preprocessor.crop)[4]
    return Image.fromarray(square[top : top + preprocessor.crop, left : left + preprocessor.crop])


def pick_queries(data_root: Path, split: str, classes: list[str], rows: int, seed: int) -> list[tuple[str, Path]]:
    """``rows`` images of ``rows`` different classes, drawn with ``seed``."""
    images, _ = query_images(data_root, split, classes)
    by_class: dict[str, list[Path]] = {}
    for label, path in images:
        by_class.setdefault(label, []).append(path)
    if len(by_class) < rows:
        raise SystemExit(f"split {split!r} has images of only {len(by_class)} gallery classes, {rows} rows asked")
    rng = np.random.default_rng(seed)
    chosen = rng.choice(sorted(by_class), size=rows, replace=False)
    return [(str(label), by_class[label][int(rng.integers(len(by_class[label])))]) for label in chosen]


def figure_rows(
    view: GalleryView,
    model: OnnxModel,
    preprocessor: Preprocessor,
    data_root: Path,
    queries: list[tuple[str, Path]],
    neighbours: int,
) -> list[list[Tile]]:
    fc7, _ = encode([path for _, path in queries], preprocessor, model)
    assert fc7 is not None
    rows = []
    for (label, path), hits in zip(queries, view.gallery.search(fc7, k=neighbours), strict=True):
        row = [Tile(centre_crop(preprocessor, path), label, "query", QUERY)]
        for hit in hits:
            source = Path(data_root) / hit.item.source if hit.item.source else None
            if source is not None and source.is_file():
                image = centre_crop(preprocessor, source)
            else:
                image = Image.open(view.gallery.thumbnail_path(hit.item.id))
            color = MATCH if hit.item.label == label else MISMATCH
            row.append(Tile(image, hit.item.label, f"d = {hit.distance:.1f}", color))
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    bench_args.add_model_args(parser)
    parser.add_argument("--query-split", default=None, help="default: the test split of the model's training split")
    parser.add_argument("--images", nargs="+", default=None, help="query images (paths under images/), not drawn")
    parser.add_argument("--rows", type=int, default=5, help="query images drawn (one class each)")
    parser.add_argument("--neighbours", type=int, default=6)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tile", type=int, default=160, help="tile side in pixels")
    parser.add_argument("--out", "--output", dest="out", type=Path, default=Path("docs/retrieval-figure4.png"))
    args = parser.parse_args(argv)

    version = load_version(args.store_root, args.model_name, args.version)
    preprocessor = version.preprocessor()
    view = GalleryView.load(version)
    if args.images:
        queries = [(rel.split("/", 1)[0], args.data_root / "images" / rel) for rel in args.images]
    else:
        split = args.query_split or default_query_split(version)
        queries = pick_queries(args.data_root, split, sorted(set(view.labels.tolist())), args.rows, args.seed)
    rows = figure_rows(view, OnnxModel(version), preprocessor, args.data_root, queries, args.neighbours)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    draw_figure(rows, args.tile).save(args.out)
    chosen = ", ".join(path.relative_to(args.data_root / "images").as_posix() for _, path in queries)
    print(f"{args.out}: {version.manifest.name}/{version.manifest.version}, queries {chosen}")
    print(f"command: {bench_args.command_line(__file__, argv)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
