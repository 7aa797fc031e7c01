"""service/engine.py: the execution-provider choice and the ONNX Runtime session wrapper."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from model_store.store import load_version
from service.runtime import CPU, CUDA, EngineError, OnnxModel, choose_providers, session_providers


def test_provider_choice() -> None:
    assert choose_providers("auto", [CUDA, CPU]) == [CUDA, CPU]
    assert choose_providers("auto", [CPU]) == [CPU]
    assert choose_providers("cpu", [CUDA, CPU]) == [CPU]
    assert choose_providers("cuda", [CUDA, CPU]) == [CUDA, CPU]
    with pytest.raises(EngineError, match="providers=cuda"):
        choose_providers("cuda", [CPU])


def test_cuda_provider_options() -> None:
    """The CUDA provider gets the kernel-search setting in ONNX Runtime's own spelling; the CPU
    provider takes no options, and a CPU-only choice carries none."""
    assert session_providers("auto", [CUDA, CPU]) == [(CUDA, {"cudnn_conv_algo_search": "HEURISTIC"}), CPU]
    assert session_providers("cuda", [CUDA, CPU], "exhaustive") == [
        (CUDA, {"cudnn_conv_algo_search": "EXHAUSTIVE"}),
        CPU,
    ]
    assert session_providers("auto", [CPU], "exhaustive") == [CPU]
    assert session_providers("cpu", [CUDA, CPU]) == [CPU]


def test_session_returns_logits_and_fc7_for_any_batch(tiny_model) -> None:
    version = load_version(tiny_model.store_root, tiny_model.name)
    model = OnnxModel(version, "auto", intra_op_threads=1)
    assert model.provider == (CUDA if CUDA in ort.get_available_providers() else CPU)  # "auto": CUDA where it is
    crops = np.random.default_rng(0).normal(scale=50, size=(3, 3, 224, 224)).astype(np.float32)
    logits, features = model.run(crops)
    assert logits.shape == (3, len(tiny_model.classes)) and features.shape == (3, version.manifest.feature_dim)
    assert (features >= 0).all()  # fc7 after ReLU
    single_logits, _ = model.run(crops[1:2])
    np.testing.assert_allclose(single_logits[0], logits[1], rtol=1e-4, atol=1e-5)
