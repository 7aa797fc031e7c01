"""From the model's outputs to answers: softmax and the paper's averaging over an image's crops.
numpy only, shared by the service, evaluation and the benchmarks."""

from __future__ import annotations

import numpy as np


def softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    shifted = logits - logits.max(axis=axis, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=axis, keepdims=True)


def average_crop_probabilities(logits: np.ndarray, crops_per_image: int) -> np.ndarray:
    """[N*crops, C] logits -> [N, C]: the mean of the crops' softmax vectors (the paper's 10-crop test)."""
    probs = softmax(logits.astype(np.float64))
    return probs.reshape(-1, crops_per_image, probs.shape[-1]).mean(axis=1)
