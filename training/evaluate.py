"""Top-1/top-5 error and mean per-class accuracy, with one centre crop or the paper's 10-crop test.

Inputs come from the shared preprocessing (``Preprocessor.crops_from_square``), and the model is
any function from a float32 crop batch to logits, so a PyTorch module and an ONNX Runtime session
are evaluated by the same code, the one the service uses to answer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import torch

from model_store.postprocessing import average_crop_probabilities
from model_store.preprocessing import Preprocessor, Tta

LogitsFn = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class EvalResult:
    tta: str
    images: int
    top1_error: float
    top5_error: float
    mean_per_class_accuracy: float

    def as_dict(self) -> dict:
        return asdict(self)


def torch_logits_fn(model: torch.nn.Module, device: torch.device | str = "cpu") -> LogitsFn:
    model.eval()

    @torch.no_grad()
    def run(crops: np.ndarray) -> np.ndarray:
        logits, _ = model(torch.from_numpy(crops).to(device))
        return logits.float().cpu().numpy()

    return run


def onnx_logits_fn(session, input_name: str = "images", output_name: str = "logits") -> LogitsFn:
    def run(crops: np.ndarray) -> np.ndarray:
        return session.run([output_name], {input_name: crops})[0]

    return run


def predict_probabilities(
    logits_fn: LogitsFn,
    squares: np.ndarray,
    pre: Preprocessor,
    tta: Tta,
    batch_images: int = 16,
    progress: Callable[[int], None] | None = None,
) -> np.ndarray:
    """[N, C] class probabilities: the mean softmax over each image's crops."""
    crops_per_image = 10 if tta == "ten_crop" else 1
    out = []
    for start in range(0, len(squares), batch_images):
        block = squares[start : start + batch_images]
        crops = np.concatenate([pre.crops_from_square(np.asarray(sq), tta) for sq in block])
        out.append(average_crop_probabilities(logits_fn(crops), crops_per_image))
        if progress:
            progress(len(block))
    return np.concatenate(out)


def score(probs: np.ndarray, labels: np.ndarray, tta: str) -> EvalResult:
    labels = np.asarray(labels)
    top5 = np.argsort(-probs, axis=1)[:, :5]
    top1_hit = top5[:, 0] == labels
    top5_hit = (top5 == labels[:, None]).any(axis=1)
    per_class = [top1_hit[labels == c].mean() for c in np.unique(labels)]
    return EvalResult(
        tta=tta,
        images=len(labels),
        top1_error=float(1 - top1_hit.mean()),
        top5_error=float(1 - top5_hit.mean()),
        mean_per_class_accuracy=float(np.mean(per_class)),
    )


def evaluate(
    logits_fn: LogitsFn,
    squares: np.ndarray,
    labels: np.ndarray,
    pre: Preprocessor,
    ttas: tuple[Tta, ...] = ("center", "ten_crop"),
    batch_images: int = 16,
    progress_factory: Callable[[str], Callable[[int], None] | None] | None = None,
) -> dict[str, EvalResult]:
    results = {}
    for tta in ttas:
        progress = progress_factory(tta) if progress_factory else None
        probs = predict_probabilities(logits_fn, squares, pre, tta, batch_images, progress)
        results[tta] = score(probs, labels, tta)
    return results
