"""CPU inference paths against the machine's limit, and whether the fast ones keep fp32's labels.

In one run:
1. the machine's matrix throughput: fp32 and bf16 GEMM GFLOP/s (PyTorch/oneDNN, all cores), and
   AlexNet's FLOPs per 224x224 crop (counted from the model's layers), which give a floor on the
   time per crop: the best images/s a 10-crop classifier could reach at each precision;
2. raw throughput of each serving path on batches of 6 ten-crop images (60 crops) and of one
   image: ONNX Runtime fp32 (the service's default), ONNX Runtime int8 (model.int8.onnx), and,
   when the `openvino` extra is installed, OpenVINO fp32 / bf16 / int8, with the ratio to ONNX
   Runtime fp32 and the fraction of the floor reached;
3. 10-crop top-1 agreement of each path with ONNX Runtime fp32 on the Caltech-101 test split (and
   each path's own top-1 error).

    python benchmarks/bench_cpu_paths.py --store-root store --version latest --output benchmarks/results/cpu_paths.md

The version needs an int8 model (`alexnet quantize` adds one). Prints a markdown report.
"""

from __future__ import annotations

import argparse
import datetime
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from bench_args import add_model_args  # noqa: E402
from bench_service import machine  # noqa: E402

from model_store.postprocessing import average_crop_probabilities  # noqa: E402
from model_store.store import ModelVersion, load_version  # noqa: E402
from service.runtime import OnnxModel, OpenVinoModel  # noqa: E402
from training.data import ImageFolder, load_squares  # noqa: E402
from training.model import build_alexnet  # noqa: E402

Run = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


def gemm_gflops(dtype: torch.dtype, n: int = 4096, rounds: int = 3) -> float:
    """The best of ``rounds`` timed n x n x n products (PyTorch: MKL/oneDNN, AMX for bf16)."""
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    a @ b
    best = 0.0
    for _ in range(rounds):
        start = time.perf_counter()
        a @ b
        best = max(best, 2 * n**3 / (time.perf_counter() - start) / 1e9)
    return best


def alexnet_flops(classes: int, variant: str) -> float:
    """Multiply-adds x 2 of convolutions and fully connected layers for one 224x224 crop."""
    model = build_alexnet(classes, variant).eval()
    macs = 0

    def count(module: torch.nn.Module, _inputs, output: torch.Tensor) -> None:
        nonlocal macs
        if isinstance(module, torch.nn.Conv2d):
            k = module.kernel_size[0] * module.kernel_size[1] * module.in_channels // module.groups
            macs += output[0].numel() * k
        elif isinstance(module, torch.nn.Linear):
            macs += module.in_features * module.out_features

    layers = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d | torch.nn.Linear)]
    hooks = [m.register_forward_hook(count) for m in layers]
    with torch.no_grad():
        model(torch.zeros(1, 3, 224, 224))
    for hook in hooks:
        hook.remove()
    return 2.0 * macs


def paths(version: ModelVersion, threads: int) -> dict[str, Run]:
    out: dict[str, Run] = {"onnxruntime fp32": OnnxModel(version, "cpu", threads).run}
    if "int8" in version.precisions:
        out["onnxruntime int8"] = OnnxModel(version, "cpu", threads, precision="int8").run
    try:
        import openvino  # noqa: F401
    except ImportError:
        return out
    for precision in ("fp32", "bf16", "int8"):
        if precision != "int8" or "int8" in version.precisions:
            out[f"openvino {precision}"] = OpenVinoModel(version, precision, threads).run
    return out


def crops_per_second(run: Run, crops: np.ndarray, seconds: float) -> float:
    run(crops)
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        run(crops)
        done += len(crops)
    return done / (time.perf_counter() - start)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_model_args(ap)
    ap.add_argument("--split", default="test30")
    ap.add_argument("--images", type=int, default=0, help="test images for the agreement (0: the whole split)")
    ap.add_argument("--seconds", type=float, default=5.0, help="time per throughput measurement")
    ap.add_argument("--threads", type=int, default=0, help="inference threads (0: the runtime's choice)")
    ap.add_argument("--paths", nargs="+", default=None, help="only these paths, e.g. 'openvino bf16'")
    ap.add_argument("--output", type=Path)
    args = ap.parse_args()

    version = load_version(args.store_root, args.model_name, args.version)
    manifest = version.manifest
    pre = version.preprocessor()
    dataset = ImageFolder(args.data_root)
    samples = [s for s in dataset.samples(args.split) if s.label < len(manifest.labels)]
    if args.images:
        samples = samples[:: max(1, len(samples) // args.images)][: args.images]
    squares = load_squares(dataset, samples, pre.resize, REPO_ROOT / ".cache" / "squares")
    labels = np.array([s.label for s in samples])

    fp32_peak, bf16_peak = gemm_gflops(torch.float32), gemm_gflops(torch.bfloat16)
    flops = alexnet_flops(len(manifest.labels), manifest.variant)
    runs = paths(version, args.threads)
    if args.paths:
        runs = {name: run for name, run in runs.items() if name in args.paths or name == "onnxruntime fp32"}
    batch = np.concatenate([pre.crops_from_square(sq, "ten_crop") for sq in squares[:6]])
    speed = {name: (crops_per_second(run, batch, args.seconds), crops_per_second(run, batch[:10], args.seconds))
             for name, run in runs.items()}  # fmt: skip

    predicted = {name: [] for name in runs}
    for start in range(0, len(squares), 8):
        crops = np.concatenate([pre.crops_from_square(sq, "ten_crop") for sq in squares[start : start + 8]])
        for name, run in runs.items():
            predicted[name].append(average_crop_probabilities(run(crops)[0], 10).argmax(1))
    predicted = {name: np.concatenate(p) for name, p in predicted.items()}
    reference = predicted["onnxruntime fp32"]

    base = speed["onnxruntime fp32"][0]
    lines = [
        "# CPU inference paths (AlexNet, 10-crop)",
        "",
        f"- date: {datetime.datetime.now().isoformat(timespec='seconds')}; machine: {machine()};"
        f" torch {torch.__version__} threads {torch.get_num_threads()}",
        f"- command: python {' '.join(sys.argv)}",
        f"- model: {manifest.name}/{manifest.version} ({manifest.variant}, {len(manifest.labels)} classes);"
        f" {flops / 1e9:.2f} GFLOP per crop (convolutions and fully connected layers, 2 x multiply-adds)",
        f"- machine GEMM (4096^3, best of 3, PyTorch): fp32 {fp32_peak:.0f} GFLOP/s, bf16 {bf16_peak:.0f} GFLOP/s ->"
        f" at most {fp32_peak * 1e9 / flops / 10:.1f} (fp32) and {bf16_peak * 1e9 / flops / 10:.1f} (bf16)"
        " 10-crop images/s",
        f"- agreement: 10-crop top-1 labels of each path vs ONNX Runtime fp32 on {len(samples)} images"
        f" of {args.split}; error: each path's own 10-crop top-1 error there",
        "",
        "| path | crops/s (batch 60) | 10-crop img/s | vs ORT fp32 | GFLOP/s | of fp32 GEMM | of bf16 GEMM "
        "| crops/s (batch 10) | top-1 agreement | top-1 error |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, (big, small) in speed.items():
        gflops = big * flops / 1e9
        lines.append(
            f"| {name} | {big:.1f} | {big / 10:.2f} | {big / base:.2f} | {gflops:.0f} | {gflops / fp32_peak:.2f} "
            f"| {gflops / bf16_peak:.2f} | {small:.1f} | {(predicted[name] == reference).mean():.4f} "
            f"| {(predicted[name] != labels).mean():.4f} |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    if args.output:
        args.output.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
