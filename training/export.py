"""Export a trained AlexNet to ONNX (input ``images``, outputs ``logits`` and ``features``, dynamic
batch) and check ONNX Runtime against PyTorch on real images before anything is published."""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from model_store.manifest import PARITY_RTOL, OnnxSignature
from training.model import AlexNet

log = logging.getLogger(__name__)
OPSET = 17


class ParityError(RuntimeError):
    """ONNX Runtime's outputs differ from PyTorch's past the tolerance."""


@dataclass(frozen=True)
class ParityReport:
    batch: int
    max_abs_logits: float
    max_abs_features: float
    rel_logits: float
    rel_features: float
    top1_agreement: float

    def as_dict(self) -> dict[str, float]:
        return dict(self.__dict__)


class _LrnFunction(torch.autograd.Function):
    """torch's local_response_norm, exported as the one ONNX ``LRN`` node (the same function: both
    divide alpha by size and pad the channel window with zeros) instead of the Pow/AvgPool/Div chain
    the exporter writes for it, which took most of OpenVINO's bf16 time (docs/performance.md, section 1)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, size: int, alpha: float, beta: float, k: float) -> torch.Tensor:
        return torch.nn.functional.local_response_norm(x, size, alpha, beta, k)

    @staticmethod
    def symbolic(g, x, size: int, alpha: float, beta: float, k: float):
        return g.op("LRN", x, size_i=size, alpha_f=alpha, beta_f=beta, bias_f=k)


class _ExportableLrn(torch.nn.Module):
    def __init__(self, lrn: torch.nn.LocalResponseNorm):
        super().__init__()
        self.size, self.alpha, self.beta, self.k = lrn.size, lrn.alpha, lrn.beta, lrn.k

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _LrnFunction.apply(x, self.size, self.alpha, self.beta, self.k)


def _with_onnx_lrn(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of ``model`` whose LocalResponseNorm layers export as ONNX LRN nodes."""
    model = copy.deepcopy(model)
    for module in list(model.modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, torch.nn.LocalResponseNorm):
                setattr(module, child_name, _ExportableLrn(child))
    return model


def export_onnx(model: AlexNet, path: Path, crop: int = 224, lrn_node: bool = False) -> Path:
    """Write the eval-mode model to ``path`` (one file, weights inside).

    ``lrn_node``: LRN as one ONNX node (model.bf16.onnx, for OpenVINO, whose LRN kernel is fast)
    rather than the exporter's elementwise chain (model.onnx: ONNX Runtime's CPU LRN kernel is
    slower than that chain: docs/performance.md, section 1)."""
    sig = OnnxSignature()
    model = model.eval().to("cpu", memory_format=torch.contiguous_format).float()
    if lrn_node:
        model = _with_onnx_lrn(model)
    dummy = torch.zeros(2, 3, crop, crop)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        torch.onnx.export(
            model,
            (dummy,),
            str(path),
            dynamo=False,  # the TorchScript exporter needs no onnxscript and handles LRN directly
            input_names=[sig.input],
            output_names=[sig.logits, sig.features],
            dynamic_axes={sig.input: {0: "batch"}, sig.logits: {0: "batch"}, sig.features: {0: "batch"}},
            opset_version=OPSET,
            do_constant_folding=True,
        )
    log.info("exported ONNX to %s (%.1f MB)", path, path.stat().st_size / 1e6)
    return path


def _relative(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max() / max(float(np.abs(b).max()), 1e-12))


def check_parity(model: AlexNet, onnx_path: Path, images: np.ndarray, rtol: float = PARITY_RTOL) -> ParityReport:
    """Run ``images`` (float32 [N,3,H,W], already preprocessed) through both and compare.

    Raises ParityError when the max abs difference of either output, relative to that output's
    largest magnitude, exceeds ``rtol``.
    """
    from service.runtime import open_session

    sig = OnnxSignature()
    model = model.eval().to("cpu", memory_format=torch.contiguous_format).float()
    with torch.no_grad():
        ref_logits, ref_features = (t.numpy() for t in model(torch.from_numpy(images)))
    session = open_session(onnx_path)
    ort_logits, ort_features = session.run([sig.logits, sig.features], {sig.input: images})
    report = ParityReport(
        batch=len(images),
        max_abs_logits=float(np.abs(ort_logits - ref_logits).max()),
        max_abs_features=float(np.abs(ort_features - ref_features).max()),
        rel_logits=_relative(ort_logits, ref_logits),
        rel_features=_relative(ort_features, ref_features),
        top1_agreement=float((ort_logits.argmax(1) == ref_logits.argmax(1)).mean()),
    )
    log.info("ONNX parity: %s", report)
    if report.rel_logits > rtol or report.rel_features > rtol:
        raise ParityError(f"ONNX Runtime differs from PyTorch past rtol={rtol}: {report}")
    return report


def check_recorded_logits(
    onnx_path: Path, images: np.ndarray, recorded: np.ndarray, rtol: float = PARITY_RTOL
) -> dict[str, float]:
    """ONNX Runtime on ``images`` against logits recorded elsewhere (at training time, for a shipped
    model): raises ParityError past ``rtol`` (max abs difference over the largest recorded magnitude)."""
    from service.runtime import open_session

    sig = OnnxSignature()
    session = open_session(onnx_path)
    logits = session.run([sig.logits], {sig.input: images})[0]
    recorded = np.asarray(recorded, dtype=np.float32)
    if logits.shape != recorded.shape:
        raise ParityError(f"recorded logits have shape {recorded.shape}, ONNX Runtime gave {logits.shape}")
    report = {
        "batch": len(images),
        "max_abs_logits": float(np.abs(logits - recorded).max()),
        "rel_logits": _relative(logits, recorded),
        "top1_agreement": float((logits.argmax(1) == recorded.argmax(1)).mean()),
    }
    log.info("parity with the recorded logits: %s", report)
    if report["rel_logits"] > rtol or report["top1_agreement"] < 1.0:
        raise ParityError(f"ONNX Runtime differs from the logits recorded at training time past rtol={rtol}: {report}")
    return report
