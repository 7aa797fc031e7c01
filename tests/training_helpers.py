"""What the tests' training runs share (no fixtures here).

The tests train AlexNet at ``TEST_WIDTH`` (``TrainConfig.width``, a deviation the manifest records): the same graph,
loop, export and serving code at about a sixteenth of the weights and a tenth of the compute, so that the pipeline
can run end to end in seconds on two cores. The paper's width is covered by tests/test_model.py (every layer's
shape), tests/test_export.py (its ONNX export and parity) and tests/test_shipped.py (the shipped model, installed
and served).
"""

from __future__ import annotations

from pathlib import Path

from image_helpers import CALTECH_ROOT

from training.config import TrainConfig

TEST_WIDTH = 0.25


def small_config(tmp_path: Path, **overrides) -> TrainConfig:
    """A run of 2 steps of 8 images on the first 3 classes at ``TEST_WIDTH``, in ``tmp_path`` (torch's threads: its
    default, one a worker in the suite: tests/conftest.py)."""
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
