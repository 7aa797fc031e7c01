"""From model outputs to answers: class probabilities of an image and its top-k classes."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from model_store.postprocessing import average_crop_probabilities
from service.schemas import Prediction


def image_probabilities(logits: np.ndarray) -> np.ndarray:
    """[crops, C] logits of one image -> [C]: the mean of the crops' softmax (10-crop, or 1 crop)."""
    return average_crop_probabilities(logits, len(logits))[0]


def top_predictions(probabilities: np.ndarray, labels: Sequence[str], k: int) -> list[Prediction]:
    order = np.argsort(-probabilities, kind="stable")[:k]
    return [Prediction(index=int(i), label=labels[i], probability=float(probabilities[i])) for i in order]
