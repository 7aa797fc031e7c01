"""What the tests' training runs share (no fixtures here).

The tests train AlexNet at ``TEST_WIDTH`` (``TrainConfig.width``, a deviation the manifest records): the same graph,
loop, export and serving code at about a sixteenth of the weights and a tenth of the compute, so that the pipeline
can run end to end in seconds on two cores. The paper's width is covered by tests/test_model.py (every layer's
shape), tests/test_export.py (its ONNX export and parity) and tests/test_shipped.py (the shipped model, installed
and served).
"""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

from image_helpers import CALTECH_ROOT

from training.config import TrainConfig

TEST_WIDTH = 0.25


def small_config(tmp_path: Path, **overrides) -> TrainConfig:
    """A run of 2 steps of 8 images on the first 3 classes at ``TEST_WIDTH``, in ``tmp_path``."""
    base = dict(
        data=str(CALTECH_ROOT),
        out=str(tmp_path / "run"),
        cache=str(tmp_path / "cache"),
        classes=3,
        batch_size=8,
        epochs=1,
        max_steps_per_epoch=2,
        width=TEST_WIDTH,
    )
    return TrainConfig(**(base | overrides))


def fewer_test_images(root: Path, per_class: int = 20, split: str = "test30") -> Path:
    """Caltech-101 as a dataset at ``root`` whose ``split`` keeps the first ``per_class`` images of each class:
    the real images (a link to them), classes and other splits, for commands that evaluate on the whole test split
    (its first classes, Faces and Faces_easy, have 405 test30 images each)."""
    (root / "splits").mkdir(parents=True)
    (root / "images").symlink_to(CALTECH_ROOT / "images", target_is_directory=True)
    shutil.copyfile(CALTECH_ROOT / "classes.txt", root / "classes.txt")
    for split_file in (CALTECH_ROOT / "splits").glob("*.txt"):
        lines = split_file.read_text().splitlines()
        if split_file.stem == split:
            seen: Counter[str] = Counter()
            kept = []
            for line in lines:
                label = line.split("/")[0]
                seen[label] += 1
                if seen[label] <= per_class:
                    kept.append(line)
            lines = kept
        (root / "splits" / split_file.name).write_text("\n".join(lines) + "\n")
    return root
