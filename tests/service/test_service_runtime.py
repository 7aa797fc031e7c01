"""service/runtime.py: the runtime and precision ``auto`` picks (a pure function of the CPU's flags,
what is installed and what the version verified), and /readyz saying which and why."""

from __future__ import annotations

import importlib.util

import httpx
import onnxruntime as ort
import pytest

from model_store.manifest import BF16_PARITY_METRIC, MANIFEST_FILE
from model_store.store import load_version, publish_version
from service.runtime import (
    BF16_CPU_FLAGS,
    CUDA,
    bf16_verified,
    choose_runtime,
    read_cpu_flags,
)

ZEN3 = frozenset({"fpu", "sse4_2", "avx", "avx2", "fma", "bmi2"})  # AVX2, no bf16 arithmetic
COOPER_LAKE = ZEN3 | {"avx512f", "avx512_bf16"}
SAPPHIRE_RAPIDS = ZEN3 | {"avx512f", "avx512_bf16", "amx_tile", "amx_bf16"}
GRANITE_RAPIDS_NO_AVX512_BF16 = ZEN3 | {"amx_tile", "amx_bf16"}
EVERYTHING = {"openvino": True, "bf16_verified": True, "gpu": False}


def pick(runtime: str = "auto", precision: str = "auto", cpu_flags=SAPPHIRE_RAPIDS, **facts) -> tuple[str, str]:
    choice = choose_runtime(runtime, precision, cpu_flags=cpu_flags, **(EVERYTHING | facts))
    return choice.runtime, choice.precision


@pytest.mark.parametrize("flags", [COOPER_LAKE, SAPPHIRE_RAPIDS, GRANITE_RAPIDS_NO_AVX512_BF16])
def test_auto_serves_bf16_on_openvino_where_everything_allows(flags) -> None:
    choice = choose_runtime("auto", "auto", cpu_flags=flags, **EVERYTHING)
    assert (choice.runtime, choice.precision) == ("openvino", "bf16") and choice.reason.startswith("auto:")


def test_auto_serves_onnxruntime_fp32_on_an_avx2_cpu_and_says_why() -> None:
    choice = choose_runtime("auto", "auto", cpu_flags=ZEN3, **EVERYTHING)
    assert (choice.runtime, choice.precision) == ("onnxruntime", "fp32")
    assert choice.reason.startswith("auto:") and all(flag in choice.reason for flag in BF16_CPU_FLAGS)


@pytest.mark.parametrize(
    ("fact", "said"),
    [
        ({"openvino": False}, "openvino is not installed"),
        ({"bf16_verified": False}, BF16_PARITY_METRIC),
        ({"gpu": True}, "GPU"),
    ],
)
def test_auto_falls_back_to_onnxruntime_fp32_when_one_fact_is_missing(fact, said) -> None:
    choice = choose_runtime("auto", "auto", cpu_flags=SAPPHIRE_RAPIDS, **(EVERYTHING | fact))
    assert (choice.runtime, choice.precision) == ("onnxruntime", "fp32") and said in choice.reason


def test_settings_force_either_choice() -> None:
    assert pick("onnxruntime", "fp32") == ("onnxruntime", "fp32")  # on a bf16 CPU with everything verified
    assert pick("onnxruntime") == ("onnxruntime", "fp32")
    assert pick("openvino", "bf16", cpu_flags=ZEN3, bf16_verified=False) == ("openvino", "bf16")
    assert pick("openvino", cpu_flags=ZEN3) == ("openvino", "fp32")  # auto precision on a set runtime
    assert pick("openvino") == ("openvino", "bf16")
    assert pick("openvino", gpu=True) == ("openvino", "bf16")  # a set runtime ignores the GPU
    assert pick(precision="int8") == ("onnxruntime", "int8")  # a set precision runs on ONNX Runtime
    assert pick(precision="bf16") == ("onnxruntime", "bf16")  # which load_model refuses, naming openvino
    assert choose_runtime("openvino", "int8", cpu_flags=ZEN3, **EVERYTHING).reason.startswith("set:")


def test_cpu_flags_are_read_from_cpuinfo(tmp_path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu avx2 amx_bf16\n\nprocessor\t: 1\nflags\t\t: fpu\n")
    assert read_cpu_flags(cpuinfo) == {"fpu", "avx2", "amx_bf16"}
    assert read_cpu_flags(tmp_path / "missing") == frozenset()


def test_bf16_is_verified_by_the_publish_time_parity_record(tiny_model, private_store) -> None:
    version = load_version(tiny_model.store_root, tiny_model.name)
    assert "bf16" in version.precisions and bf16_verified(version)
    metrics = {k: v for k, v in version.manifest.metrics.items() if k != BF16_PARITY_METRIC}
    files = {n: version.path / n for n in version.manifest.files if n != MANIFEST_FILE}
    unrecorded = publish_version(private_store, version.manifest.model_copy(update={"metrics": metrics}), files)
    assert not bf16_verified(load_version(private_store, tiny_model.name, unrecorded.name))
    failing = metrics | {BF16_PARITY_METRIC: {"rel_logits": 0.5, "rel_features": 0.0}}
    publish_version(private_store, version.manifest.model_copy(update={"metrics": failing}), files)
    assert not bf16_verified(load_version(private_store, tiny_model.name))


def test_readyz_reports_the_automatic_choice(tiny_model, private_store, start_service) -> None:
    server = start_service(private_store, runtime="auto")  # the test servers' default is onnxruntime
    ready = httpx.get(f"{server.url}/readyz").json()
    flags = read_cpu_flags()
    expected = choose_runtime(
        "auto",
        "auto",
        cpu_flags=flags,
        openvino=importlib.util.find_spec("openvino") is not None,
        bf16_verified=True,  # the tiny model is published with its bf16 graph
        gpu=CUDA in ort.get_available_providers(),
    )
    assert (ready["runtime"], ready["precision"], ready["runtime_reason"]) == (
        expected.runtime,
        expected.precision,
        expected.reason,
    )
    if not flags & BF16_CPU_FLAGS:  # e.g. an AVX2-only CPU: the fp32 model on ONNX Runtime
        assert (ready["runtime"], ready["precision"]) == ("onnxruntime", "fp32")
        assert ready["provider"] in ("CPUExecutionProvider", CUDA)
    assert f"runtime {expected.runtime}, precision {expected.precision} ({expected.reason})" in server.log()
