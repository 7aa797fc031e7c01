"""ONNX Runtime's CUDA provider on a published model: parity with its CPU provider, and crops/s at
batch sizes 1-256 against two baselines measured in the same run.

Parity: every test image's ten crops (real Caltech-101 photos through the service's preprocessing)
go through the CUDA and the CPU sessions; the report gives the largest logit and fc7 differences and
how often the 10-crop top-1 label agrees. Throughput: the service's own session (``OnnxModel``,
numpy in and out, so host-device copies are counted as the service pays them) at each batch size,
next to the CPU provider on the same machine and to PyTorch eager fp32 on the same GPU (random
weights of the same architecture: speed does not depend on them).

    python benchmarks/bench_ort_gpu.py --store-root store --model-name alexnet-caltech101 \
        --data-root <caltech101 root> --output benchmarks/results/ort_gpu.md

Needs onnxruntime-gpu and a CUDA device (PyTorch's baseline is skipped without torch.cuda).
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from bench_args import add_model_args, command_line, write_report  # noqa: E402

from model_store.store import load_version  # noqa: E402
from service.runtime import CPU, CUDA, OnnxModel  # noqa: E402
from training.index import gallery_images  # noqa: E402

BATCHES = (1, 8, 10, 32, 64, 128, 256)


def rate(fn: Callable[[], object], crops: int, min_seconds: float, warmup: int = 3) -> tuple[float, float]:
    """(crops/s, ms per call) of ``fn`` after ``warmup`` calls (cuDNN picks its algorithms there)."""
    for _ in range(warmup):
        fn()
    calls, start = 0, time.perf_counter()
    while calls < 3 or time.perf_counter() - start < min_seconds:
        fn()
        calls += 1
    seconds = (time.perf_counter() - start) / calls
    return crops / seconds, seconds * 1000


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def parity(gpu: OnnxModel, cpu: OnnxModel, images: list[np.ndarray]) -> list[str]:
    logit_diff = feature_diff = feature_scale = 0.0
    agree = 0
    for crops in images:
        g_logits, g_features = gpu.run(crops)
        c_logits, c_features = cpu.run(crops)
        logit_diff = max(logit_diff, float(np.abs(g_logits - c_logits).max()))
        feature_diff = max(feature_diff, float(np.abs(g_features - c_features).max()))
        feature_scale = max(feature_scale, float(np.abs(c_features).max()))
        agree += int(softmax(g_logits).mean(0).argmax() == softmax(c_logits).mean(0).argmax())
    return [
        f"- parity, {len(images)} test images x 10 crops, CUDA against CPU provider: 10-crop top-1 agrees on"
        f" {agree} of {len(images)}; largest |logit difference| {logit_diff:.2e}; largest |fc7 difference|"
        f" {feature_diff:.2e} (fc7 values reach {feature_scale:.1f})",
    ]


def torch_runner(batch: int, classes: int) -> Callable[[], object] | None:
    try:
        import torch

        from training.model import build_alexnet
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    model = build_alexnet(classes).cuda().eval()
    x = torch.randn(batch, 3, 224, 224)

    def run() -> object:
        with torch.inference_mode():
            logits, fc7 = model(x.cuda())
            return logits.cpu(), fc7.cpu()  # back to the host, as ONNX Runtime returns them

    return run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_model_args(parser)
    parser.add_argument("--batches", type=int, nargs="+", default=list(BATCHES), help="crops per run")
    parser.add_argument("--conv-algo-search", default="heuristic", choices=["heuristic", "exhaustive", "default"])
    parser.add_argument("--seconds", type=float, default=1.0, help="least time per measurement")
    parser.add_argument("--output", type=Path, default=REPO_ROOT / "benchmarks" / "results" / "ort_gpu.md")
    args = parser.parse_args(argv)

    version = load_version(args.store_root, args.model_name, args.version)
    gpu = OnnxModel(version, "cuda", cuda_conv_algo_search=args.conv_algo_search)
    cpu = OnnxModel(version, "cpu")
    assert gpu.provider == CUDA and cpu.provider == CPU
    preprocessor = version.preprocessor()
    test_images = gallery_images(args.data_root, "test30", per_class=1)
    images = [preprocessor.crops(path.read_bytes(), "ten_crop") for _, path in test_images]
    lines = parity(gpu, cpu, images)
    print(lines[0], flush=True)

    pool = np.concatenate(images)
    rows = [
        "| batch (crops) | CUDA provider crops/s | ms/batch | CPU provider crops/s | CUDA / CPU |"
        " PyTorch eager (GPU) crops/s | ORT CUDA / PyTorch |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    classes = version.manifest.num_classes
    for batch in args.batches:
        crops = np.ascontiguousarray(np.resize(pool, (batch, *pool.shape[1:])))
        gpu_rate, gpu_ms = rate(lambda c=crops: gpu.run(c), batch, args.seconds)
        cpu_rate, _ = rate(lambda c=crops: cpu.run(c), batch, args.seconds, warmup=1)
        runner = torch_runner(batch, classes)
        torch_rate = rate(runner, batch, args.seconds)[0] if runner else float("nan")
        row = (
            f"| {batch} | {gpu_rate:,.0f} | {gpu_ms:.2f} | {cpu_rate:,.0f} | {gpu_rate / cpu_rate:.1f} |"
            f" {torch_rate:,.0f} | {gpu_rate / torch_rate:.2f} |"
        )
        print(row, flush=True)
        rows.append(row)

    device = "unknown GPU"
    try:
        import torch

        device = f"{torch.cuda.get_device_name(0)}, torch {torch.__version__}"
    except Exception:  # noqa: BLE001 - the name is only for the report
        pass
    report = [
        "# ONNX Runtime's CUDA provider (the service's GPU path)",
        "",
        f"- date: {datetime.datetime.now().isoformat(timespec='seconds')}; device: {device}; {os.cpu_count()} CPUs",
        f"- onnxruntime {ort.__version__} ({', '.join(ort.get_available_providers())}); model"
        f" {version.manifest.name}/{version.manifest.version} ({classes} classes), fp32 `model.onnx`",
        f"- command: {command_line(__file__, argv)}",
        *lines,
        "- throughput: the service's session (numpy in, logits and fc7 out: host-device copies included) at"
        " each batch of crops (one 10-crop image = 10 crops); baselines in the same run: ONNX Runtime's CPU"
        " provider on this machine's CPUs, and PyTorch eager fp32 on the same GPU (input copied in, logits and fc7"
        " copied out)",
        "",
        *rows,
        "",
    ]
    write_report(args.output, "\n".join(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
