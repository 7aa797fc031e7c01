"""Build a version's retrieval gallery: the PUBLISHED ONNX model (ONNX Runtime, not PyTorch) turns
gallery images into centre-crop fc7 vectors, written with ``model_store.gallery`` into
``<version_dir>/index/``.

By default the gallery is the model's training split of Caltech-101, as in the paper's Figure 4
(test images are queried against training images). Each item's label is its class folder and its
source is the image path relative to the data root.

``index_kind`` (``--index-kind``) picks the FAISS index (``model_store/index_kinds.py``): ``flat``,
exact, by default; ``ivf_pq``, ``opq_ivf_pq``, ``binary`` or ``sq_fp16`` for large galleries (see
docs/scaling-index.md). A trainable kind is trained on the gallery's own vectors and needs at least
``index_kinds.MIN_TRAIN`` images.

The index is built in a staging folder beside ``index/`` and renamed into place, so a crash leaves
the old index (or none). Build it while no service writes to that version's gallery.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort

from model_store.preprocessing import decode_image, resize_center_crop
from model_store.store import INDEX_DIR, fsync_path, load_version

log = logging.getLogger(__name__)
IMAGES_DIR = "images"
SPLITS_DIR = "splits"
DEFAULT_BATCH_SIZE = 32


def gallery_images(
    data_root: Path, split: str, classes: Sequence[str] | None = None, per_class: int | None = None
) -> list[tuple[str, Path]]:
    """(class, image path) for each line of ``splits/<split>.txt``, optionally only ``classes`` and
    the first ``per_class`` images of each."""
    split_file = Path(data_root) / SPLITS_DIR / f"{split}.txt"
    if not split_file.is_file():
        raise FileNotFoundError(f"no split file {split_file}")
    wanted = set(classes) if classes else None
    taken: dict[str, int] = {}
    images = []
    for line in split_file.read_text().splitlines():
        if not (line := line.strip()):
            continue
        label = line.split("/", 1)[0]
        if wanted is not None and label not in wanted:
            continue
        if per_class is not None and taken.get(label, 0) >= per_class:
            continue
        taken[label] = taken.get(label, 0) + 1
        images.append((label, Path(data_root) / IMAGES_DIR / line))
    if wanted is not None and (missing := wanted - set(taken)):
        raise ValueError(f"split {split!r} has no images of {sorted(missing)}")
    return images


def onnx_providers() -> list[str]:
    available = ort.get_available_providers()
    return [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]


def build_gallery_index(
    store_root: Path,
    model_name: str,
    version: str,
    data_root: Path,
    split: str = "train30",
    batch_size: int = DEFAULT_BATCH_SIZE,
    classes: Sequence[str] | None = None,
    per_class: int | None = None,
    overwrite: bool = False,
    index_kind: str = "flat",
) -> Path:
    """Compute centre-crop fc7 vectors of the split's images with the published model and write the
    gallery into the version folder; returns the index folder."""
    from model_store.gallery import Gallery, make_thumbnail  # FAISS: not needed to train or export
    from model_store.index_kinds import MIN_TRAIN, TRAINABLE, check_kind

    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    data_root = Path(data_root)
    model = load_version(Path(store_root), model_name, version)
    index_dir = model.index_dir
    if index_dir.exists() and not overwrite:
        raise FileExistsError(f"{index_dir} exists; pass overwrite=True (--overwrite) to rebuild it")
    images = gallery_images(data_root, split, classes, per_class)
    if not images:
        raise ValueError(f"split {split!r} selects no images")
    if check_kind(index_kind) in TRAINABLE and len(images) < MIN_TRAIN:  # before the long feature pass
        raise ValueError(
            f"index kind {index_kind!r} needs at least {MIN_TRAIN} gallery images to train on, the split"
            f" selects {len(images)}; use --index-kind flat"
        )
    preprocessor = model.preprocessor()
    sig = model.manifest.onnx
    session = ort.InferenceSession(str(model.model_path), providers=onnx_providers())
    log.info(
        "indexing %d images of %s/%s with %s/%s on %s",
        len(images), data_root, split, model.manifest.name, model.manifest.version, session.get_providers()[0],
    )  # fmt: skip

    vectors, thumbnails = [], []
    for start in range(0, len(images), batch_size):
        crops = []
        for _, path in images[start : start + batch_size]:
            image = decode_image(path, preprocessor.max_pixels)
            # the same steps as Preprocessor.crops(path, "center"), keeping the decoded image for the thumbnail
            crops.append(preprocessor.crops_from_square(resize_center_crop(image, preprocessor.resize), "center"))
            thumbnails.append(make_thumbnail(image))
        (features,) = session.run([sig.features], {sig.input: np.concatenate(crops)})
        vectors.append(features)
        log.info("indexed %d/%d", min(start + batch_size, len(images)), len(images))

    staging = Path(tempfile.mkdtemp(prefix=f".{INDEX_DIR}-build-", dir=model.path))
    try:
        gallery = Gallery.empty(staging, model.manifest.feature_dim, index_kind=index_kind)
        gallery.add(
            np.concatenate(vectors),
            labels=[label for label, _ in images],
            sources=[path.relative_to(data_root).as_posix() for _, path in images],
            thumbnails=thumbnails,
        )
        old = model.path / f".{INDEX_DIR}-old"
        if index_dir.exists():
            shutil.rmtree(old, ignore_errors=True)
            index_dir.rename(old)
        staging.rename(index_dir)
        fsync_path(model.path)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.info("wrote a %s gallery of %d items to %s", index_kind, len(images), index_dir)
    return index_dir


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--store-root", type=Path, default=Path("store"), help="model store folder (default: store)")
    parser.add_argument("--model-name", default="alexnet-caltech101", help="published model name")
    parser.add_argument("--version", default="latest", help="model version: vN or latest (default: latest)")
    parser.add_argument("--data-root", type=Path, required=True, help="dataset root with images/ and splits/")
    parser.add_argument("--split", default="train30", help="split whose images form the gallery (default: train30)")
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE, help="images per ONNX Runtime run")
    parser.add_argument("--classes", nargs="+", default=None, help="only these classes (default: all)")
    parser.add_argument("--per-class", type=int, default=None, help="at most this many images per class")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing index of the version")
    parser.add_argument(
        "--index-kind",
        default="flat",
        help="FAISS index: flat (default: exact), sq_fp16, ivf_pq, opq_ivf_pq or binary (approximate, for large"
        " galleries; trained on the gallery, at least 1000 images); see docs/scaling-index.md",
    )
    return parser


def run(args: argparse.Namespace) -> int:
    index_dir = build_gallery_index(
        store_root=args.store_root,
        model_name=args.model_name,
        version=args.version,
        data_root=args.data_root,
        split=args.split,
        batch_size=args.batch_size,
        classes=args.classes,
        per_class=args.per_class,
        overwrite=args.overwrite,
        index_kind=args.index_kind,
    )
    print(index_dir)
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    raise SystemExit(run(add_arguments(argparse.ArgumentParser(description=__doc__.split("\n\n")[0])).parse_args()))
