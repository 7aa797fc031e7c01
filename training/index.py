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

import logging
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

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
    from model_store.gallery import GALLERY_FEATURE, Gallery, gallery_vector  # FAISS: not needed to train or export
    from model_store.index_kinds import MIN_TRAIN, TRAINABLE, check_kind
    from service.runtime import open_session

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
    session = open_session(model.model_path, "auto")  # CUDA where ONNX Runtime has it, else the CPU
    log.info(
        "indexing %d images of %s/%s with %s/%s on %s",
        len(images), data_root, split, model.manifest.name, model.manifest.version, session.get_providers()[0],
    )  # fmt: skip

    vectors, thumbnails = [], []
    for start in range(0, len(images), batch_size):
        crops = []
        for _, path in images[start : start + batch_size]:
            prepared = preprocessor.prepare(path, GALLERY_FEATURE, thumbnail=True)
            crops.append(prepared.crops)
            thumbnails.append(prepared.thumbnail or b"")  # always made: thumbnail=True
        (features,) = session.run([sig.features], {sig.input: np.concatenate(crops)})
        vectors.extend(map(gallery_vector, np.split(features, np.cumsum([len(c) for c in crops])[:-1])))
        log.info("indexed %d/%d", min(start + batch_size, len(images)), len(images))

    staging = Path(tempfile.mkdtemp(prefix=f".{INDEX_DIR}-build-", dir=model.path))
    try:
        gallery = Gallery.empty(staging, model.manifest.feature_dim, index_kind=index_kind)
        gallery.add(
            np.stack(vectors),
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
