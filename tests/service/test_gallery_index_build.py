"""training/index.py: the published ONNX model's centre-crop fc7 vectors of real Caltech images."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from PIL import Image

from alexnet_cli.index import add_arguments, run
from model_store.gallery import Gallery
from model_store.store import load_version
from training.index import gallery_images


def test_gallery_holds_the_split_images_with_labels_sources_and_thumbnails(tiny_model) -> None:
    gallery = Gallery.load(tiny_model.version_dir / "index")
    items = gallery.items()
    assert len(items) == 4 * len(tiny_model.classes)
    assert sorted({it.label for it in items}) == sorted(tiny_model.classes)
    expected = gallery_images(tiny_model.data_root, "train30", tiny_model.classes, per_class=4)
    assert [it.source for it in items] == [p.relative_to(tiny_model.data_root).as_posix() for _, p in expected]
    assert all(it.source.startswith(f"images/{it.label}/") for it in items)
    for item in items[:3]:
        assert max(Image.open(gallery.thumbnail_path(item.id)).size) == 96


def test_vectors_are_the_onnx_centre_crop_fc7(tiny_model) -> None:
    model = load_version(tiny_model.store_root, tiny_model.name)
    gallery = Gallery.load(model.index_dir)
    item = gallery.items()[5]
    crops = model.preprocessor().crops(tiny_model.data_root / item.source, "center")
    session = ort.InferenceSession(str(model.model_path), providers=["CPUExecutionProvider"])
    (features,) = session.run(["features"], {"images": crops})
    np.testing.assert_allclose(gallery.vector(item.id), features[0], rtol=1e-5, atol=1e-5)


def test_selection_of_classes_and_counts(caltech_root: Path) -> None:
    images = gallery_images(caltech_root, "train30", ["watch", "Faces"], per_class=2)
    assert [label for label, _ in images] == ["Faces", "Faces", "watch", "watch"]  # split-file order
    assert all(path.is_file() for _, path in images)
    with pytest.raises(ValueError, match="no images of"):
        gallery_images(caltech_root, "train30", ["no_such_class"])
    with pytest.raises(FileNotFoundError):
        gallery_images(caltech_root, "nosplit")


def test_cli_refuses_to_replace_an_index_without_overwrite(tiny_model) -> None:
    parser = add_arguments(argparse.ArgumentParser())
    args = parser.parse_args(
        ["--store-root", str(tiny_model.store_root), "--model-name", tiny_model.name,
         "--data-root", str(tiny_model.data_root), "--classes", "Faces", "--per-class", "1"]
    )  # fmt: skip
    assert args.split == "train30" and args.version == "latest" and not args.overwrite
    with pytest.raises(FileExistsError, match="--overwrite"):
        run(args)
