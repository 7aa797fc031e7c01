"""The model runtimes: one interface (``Model``), ONNX Runtime (``OnnxModel``) and OpenVINO
(``OpenVinoModel``) behind it, the choice of runtime and precision at start-up, and
``open_session``, the one place an ONNX Runtime session is made (the service, the gallery index
build, the export parity checks and the int8 agreement all open theirs here).

``runtime`` and ``model_precision`` default to ``auto``: OpenVINO bf16 where the CPU computes in
bf16 (``avx512_bf16`` or ``amx_bf16``), OpenVINO is installed and the version carries a bf16 graph
that passed its parity check at publish time; ONNX Runtime fp32 otherwise (and always beside a GPU
ONNX Runtime can use). Either setting forces its choice (docs/performance.md has the measurements).
OpenVINO is optional: it is imported only when a model is built on it.
"""

from __future__ import annotations

import importlib.util
import logging
import threading
from collections.abc import Sequence, Set
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import onnxruntime as ort

from model_store.manifest import BF16_PARITY_METRIC, PARITY_RTOL
from model_store.store import ModelVersion
from service.parallelism import plan_parallelism
from service.settings import Settings

log = logging.getLogger(__name__)
CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
BF16_CPU_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})  # /proc/cpuinfo flags of CPUs with bf16 arithmetic
CPUINFO = Path("/proc/cpuinfo")


class EngineError(RuntimeError):
    """The model cannot be served as configured (raised at start-up)."""


class Model(Protocol):
    """crops float32 [N,3,H,W] -> (logits [N,C], fc7 features [N,4096]), callable from several threads."""

    provider: str  # ONNX Runtime execution provider, or "OpenVINO CPU (<precision>)"
    threads: int  # the runtime's threads per run (0: the runtime's default)
    precision: str  # fp32, int8 or bf16

    def run(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...


# --- ONNX Runtime ----------------------------------------------------------------------------------


def choose_providers(preference: str, available: Sequence[str]) -> list[str]:
    """ONNX Runtime providers in order of preference: CUDA first when allowed and present."""
    if preference == "cpu":
        return [CPU]
    if CUDA in available:
        return [CUDA, CPU]
    if preference == "cuda":
        raise EngineError(f"providers=cuda, but this ONNX Runtime offers only {list(available)}")
    return [CPU]


def session_providers(
    preference: str, available: Sequence[str], cuda_conv_algo_search: str = "heuristic"
) -> list[str | tuple[str, dict[str, str]]]:
    """``choose_providers`` with the CUDA provider's options: how cuDNN picks its convolution kernels
    (the service's batches take many shapes, and an exhaustive search stalls on each new one)."""
    chosen = choose_providers(preference, available)
    options = {"cudnn_conv_algo_search": cuda_conv_algo_search.upper()}
    return [(CUDA, options) if name == CUDA else name for name in chosen]


def open_session(
    path: Path,
    preference: str = "cpu",
    threads: int = 0,
    spinning: bool = True,
    cuda_conv_algo_search: str = "heuristic",
) -> ort.InferenceSession:
    """An ONNX Runtime session on ``path``: providers by ``preference`` (cpu, auto or cuda),
    ``threads`` per run (0: ONNX Runtime's default), all graph optimisations."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    providers = session_providers(preference, ort.get_available_providers(), cuda_conv_algo_search)
    return ort.InferenceSession(str(path), sess_options=options, providers=providers)


class OnnxModel:
    """One ONNX Runtime session on a version's model file."""

    runtime = "onnxruntime"

    def __init__(
        self,
        version: ModelVersion,
        preference: str = "auto",
        intra_op_threads: int = 0,
        spinning: bool = True,
        precision: str = "fp32",
        cuda_conv_algo_search: str = "heuristic",
    ):
        path = version.model_file(precision)
        self.session = open_session(path, preference, intra_op_threads, spinning, cuda_conv_algo_search)
        self.threads = intra_op_threads
        self.provider = self.session.get_providers()[0]
        self.precision = precision
        if preference == "cuda" and self.provider != CUDA:
            raise EngineError(f"providers=cuda, but ONNX Runtime fell back to {self.provider}")
        self.signature = version.manifest.onnx
        self._outputs = [self.signature.logits, self.signature.features]

    def run(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        logits, features = self.session.run(self._outputs, {self.signature.input: crops})
        return logits, features


# --- OpenVINO --------------------------------------------------------------------------------------

OPENVINO_HINTS = {"fp32": "f32", "bf16": "bf16", "int8": "f32"}  # int8: the quantized layers in int8, the rest fp32


class OpenVinoModel:
    """The model on OpenVINO's CPU plugin: the same ONNX files, run in fp32, bf16 (AMX where the CPU
    has it) or int8 (the QDQ model). Needs the ``openvino`` extra."""

    runtime = "openvino"

    def __init__(self, version: ModelVersion, precision: str = "fp32", threads: int = 0):
        try:
            import openvino as ov
        except ImportError as exc:
            raise EngineError("runtime=openvino needs the openvino package (pip install '.[openvino]')") from exc
        core = ov.Core()
        hint = OPENVINO_HINTS[precision]
        config: dict[str, str | int] = {"INFERENCE_PRECISION_HINT": hint, "PERFORMANCE_HINT": "LATENCY"}
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        # fp32 and bf16 run the bf16 graph (LRN as one node) when the version has it
        path = version.model_file("bf16" if precision == "fp32" and "bf16" in version.precisions else precision)
        self._compiled = core.compile_model(core.read_model(str(path)), "CPU", config)
        self.signature = version.manifest.onnx
        self._logits = self._compiled.output(self.signature.logits)
        self._features = self._compiled.output(self.signature.features)
        self._requests = threading.local()  # one infer request per inference worker thread
        self._input_lock = threading.Lock()
        self._tensor = ov.Tensor
        self.provider = f"OpenVINO CPU ({precision})"
        self.threads = threads
        self.precision = precision

    def run(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        request = getattr(self._requests, "request", None)
        if request is None:
            request = self._requests.request = self._compiled.create_infer_request()
        # Inputs are given to the request one thread at a time: two inference workers doing it at once deadlocked
        # inside OpenVINO's Python input handling now and then (2026.4; about 1 start in 20 with two workers). The
        # inference itself runs concurrently.
        with self._input_lock:
            request.set_input_tensor(self._tensor(np.ascontiguousarray(crops)))
        results = request.infer()
        return np.asarray(results[self._logits]), np.asarray(results[self._features])


# --- which runtime and precision -------------------------------------------------------------------


@dataclass(frozen=True)
class RuntimeChoice:
    runtime: str  # onnxruntime or openvino
    precision: str  # fp32, int8 or bf16
    reason: str


def choose_runtime(
    runtime: str, precision: str, *, cpu_flags: Set[str], openvino: bool, bf16_verified: bool, gpu: bool
) -> RuntimeChoice:
    """The settings' ``runtime`` and ``model_precision`` with ``auto`` resolved.

    A set precision is served as set (on ONNX Runtime unless ``runtime`` says otherwise). An
    ``auto`` precision is bf16 on OpenVINO when nothing speaks against it: no GPU for ONNX Runtime
    (``gpu``), the CPU has bf16 arithmetic (``cpu_flags``), ``openvino`` is importable and the
    version's bf16 graph was verified at publish time (``bf16_verified``); otherwise fp32, on
    OpenVINO where that runtime was set, else on ONNX Runtime."""
    if precision != "auto":
        if runtime == "auto":
            return RuntimeChoice("onnxruntime", precision, f"set: model_precision={precision}, on ONNX Runtime")
        return RuntimeChoice(runtime, precision, f"set: runtime={runtime}, model_precision={precision}")
    if runtime == "onnxruntime":
        return RuntimeChoice(runtime, "fp32", "set: runtime=onnxruntime; model_precision=auto serves fp32 on it")
    against = [
        "ONNX Runtime runs on the GPU" if gpu and runtime == "auto" else "",
        "" if cpu_flags & BF16_CPU_FLAGS else f"the CPU has none of {', '.join(sorted(BF16_CPU_FLAGS))}",
        "" if openvino else "openvino is not installed",
        "" if bf16_verified else f"the version has no bf16 model with a passing {BF16_PARITY_METRIC} record",
    ]
    if not any(against):
        return RuntimeChoice(
            "openvino", "bf16", f"auto: the CPU computes in bf16, OpenVINO is installed, {BF16_PARITY_METRIC} passed"
        )
    why = "; ".join(reason for reason in against if reason)
    if runtime == "openvino":
        return RuntimeChoice("openvino", "fp32", f"set: runtime=openvino; auto precision fp32, as {why}")
    return RuntimeChoice("onnxruntime", "fp32", f"auto: ONNX Runtime fp32, as {why}")


def read_cpu_flags(cpuinfo: Path = CPUINFO) -> frozenset[str]:
    """The first processor's flags in /proc/cpuinfo (none where it cannot be read)."""
    try:
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("flags"):
                return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def bf16_verified(version: ModelVersion) -> bool:
    """The version has model.bf16.onnx, and its publish-time parity against PyTorch is recorded and
    within the publishing tolerance."""
    parity = version.manifest.metrics.get(BF16_PARITY_METRIC)
    if "bf16" not in version.precisions or not isinstance(parity, dict):
        return False
    try:
        return max(float(parity["rel_logits"]), float(parity["rel_features"])) <= PARITY_RTOL
    except (KeyError, TypeError, ValueError):
        return False


def runtime_choice(version: ModelVersion, settings: Settings) -> RuntimeChoice:
    """``choose_runtime`` on this machine, this ONNX Runtime and this version."""
    return choose_runtime(
        settings.runtime,
        settings.model_precision,
        cpu_flags=read_cpu_flags(),
        openvino=importlib.util.find_spec("openvino") is not None,
        bf16_verified=bf16_verified(version),
        gpu=settings.providers != "cpu" and CUDA in ort.get_available_providers(),
    )


def load_model(version: ModelVersion, settings: Settings, choice: RuntimeChoice | None = None) -> Model:
    """The model on the chosen runtime and precision (``runtime_choice`` unless ``choice`` is given)."""
    choice = choice or runtime_choice(version, settings)
    log.info("runtime %s, precision %s (%s)", choice.runtime, choice.precision, choice.reason)
    if choice.precision not in version.precisions:
        raise EngineError(
            f"model_precision={choice.precision}, but {version.manifest.name}/{version.manifest.version} "
            f"has only {', '.join(version.precisions)} (`alexnet publish` builds int8 and bf16 models)"
        )
    if choice.runtime == "openvino":
        return OpenVinoModel(version, choice.precision, settings.intra_op_threads)
    if choice.precision == "bf16":
        raise EngineError("model_precision=bf16 needs runtime=openvino (ONNX Runtime's CPU kernels are fp32/int8)")
    on_cpu = choose_providers(settings.providers, ort.get_available_providers())[0] == CPU
    threads = plan_parallelism(settings, onnxruntime_cpu=on_cpu).threads
    return OnnxModel(
        version,
        settings.providers,
        threads,
        settings.intra_op_spinning,
        choice.precision,
        settings.cuda_conv_algo_search,
    )
