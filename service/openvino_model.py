"""The model on OpenVINO's CPU plugin: the same ONNX files, run in fp32, bf16 (AMX where the CPU has
it) or int8 (the QDQ model). Optional: needs the ``openvino`` extra; imported only when selected.
"""

from __future__ import annotations

import threading

import numpy as np

from model_store.store import ModelVersion

HINTS = {"fp32": "f32", "bf16": "bf16", "int8": "f32"}  # int8: the quantized layers in int8, the rest fp32


class OpenVinoModel:
    """crops [N,3,H,W] -> (logits [N,C], fc7 features [N,4096]), like ``OnnxModel``."""

    def __init__(self, version: ModelVersion, precision: str = "fp32", threads: int = 0):
        try:
            import openvino as ov
        except ImportError as exc:
            from service.engine import EngineError

            raise EngineError("runtime=openvino needs the openvino package (pip install '.[openvino]')") from exc
        core = ov.Core()
        config: dict[str, str | int] = {"INFERENCE_PRECISION_HINT": HINTS[precision], "PERFORMANCE_HINT": "LATENCY"}
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        # fp32 and bf16 run the bf16 graph (LRN as one node) when the version has it
        path = version.model_file("bf16" if precision == "fp32" and "bf16" in version.precisions else precision)
        self._compiled = core.compile_model(core.read_model(str(path)), "CPU", config)
        self.signature = version.manifest.onnx
        self._logits = self._compiled.output(self.signature.logits)
        self._features = self._compiled.output(self.signature.features)
        self._requests = threading.local()  # one infer request per inference worker thread
        self.provider = f"OpenVINO CPU ({precision})"
        self.threads = threads  # per run (0: OpenVINO's default)
        self.precision = precision

    def run(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        request = getattr(self._requests, "request", None)
        if request is None:
            request = self._requests.request = self._compiled.create_infer_request()
        results = request.infer(crops)
        return np.asarray(results[self._logits]), np.asarray(results[self._features])
