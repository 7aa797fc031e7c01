"""AlexNet on a CUDA GPU with PyTorch: inference at batch sizes 1-256 and training-step throughput.

Inference: crops/s of the eval-mode model (logits and fc7 both computed, as the ONNX export does)
in fp32 (TF32 convolutions, cuDNN's default) and in bf16 autocast, each with channels_last, at
batch sizes 1 to 256 crops; one /classify image is 10 crops, so images/s = crops/s / 10.
Training: images/s of full SGD steps (forward, backward, update) on batches of 128 and 256,
with and without AMP (bf16) and channels_last, the switches `alexnet train` turns on for CUDA.
The baseline of each table is its fp32 / contiguous row, measured in the same run.

    python benchmarks/bench_gpu.py --out benchmarks/results/gpu_h100.md

Random inputs: speed does not depend on pixel values here. Needs a CUDA device.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from training.model import build_alexnet  # noqa: E402

CLASSES = 101
DEVICE = torch.device("cuda")


def sync() -> None:
    if DEVICE.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, warmup: int, iters: int) -> float:
    """Seconds per call, after warm-up (cuDNN autotuning happens there)."""
    for _ in range(warmup):
        fn()
    sync()
    start = time.perf_counter()
    for _ in range(iters):
        fn()
    sync()
    return (time.perf_counter() - start) / iters


def inference_table(batches: list[int], iters: int) -> list[str]:
    model = build_alexnet(CLASSES).to(DEVICE).eval().to(memory_format=torch.channels_last)
    rows = [
        "| batch (crops) | fp32 crops/s | bf16 crops/s | bf16 / fp32 | fp32 ms/batch | bf16 ms/batch |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for batch in batches:
        x = torch.randn(batch, 3, 224, 224, device=DEVICE).contiguous(memory_format=torch.channels_last)
        seconds = {}
        for name, dtype in (("fp32", None), ("bf16", torch.bfloat16)):

            @torch.no_grad()
            def step(dtype=dtype, x=x):
                with torch.autocast(DEVICE.type, dtype=dtype or torch.float32, enabled=dtype is not None):
                    model(x)

            seconds[name] = timed(step, 5, iters)
        fp32, bf16 = batch / seconds["fp32"], batch / seconds["bf16"]
        rows.append(
            f"| {batch} | {fp32:,.0f} | {bf16:,.0f} | {bf16 / fp32:.2f} | "
            f"{seconds['fp32'] * 1e3:.2f} | {seconds['bf16'] * 1e3:.2f} |"
        )
    return rows


def training_table(batches: list[int], iters: int) -> list[str]:
    rows = ["| batch | AMP | channels_last | images/s | vs fp32 contiguous |", "|---:|---|---|---:|---:|"]
    for batch in batches:
        base = None
        for amp in (False, True):
            for channels_last in (False, True):
                fmt = torch.channels_last if channels_last else torch.contiguous_format
                model = build_alexnet(CLASSES, init="kaiming").to(DEVICE).train().to(memory_format=fmt)
                opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, weight_decay=5e-4)
                x = torch.randn(batch, 3, 224, 224, device=DEVICE).contiguous(memory_format=fmt)
                y = torch.randint(0, CLASSES, (batch,), device=DEVICE)

                def step(model=model, opt=opt, x=x, y=y, amp=amp):
                    with torch.autocast(DEVICE.type, dtype=torch.bfloat16, enabled=amp):
                        logits, _ = model(x)
                        loss = F.cross_entropy(logits.float(), y)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()

                rate = batch / timed(step, 5, iters)
                base = base or rate
                rows.append(
                    f"| {batch} | {'bf16' if amp else 'off'} | {'on' if channels_last else 'off'} | "
                    f"{rate:,.0f} | {rate / base:.2f} |"
                )
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 8, 10, 32, 64, 128, 256])
    ap.add_argument("--train-batches", type=int, nargs="+", default=[128, 256])
    ap.add_argument("--iters", type=int, default=30)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--cpu-smoke", action="store_true", help="run on the CPU (checks the script, not a benchmark)")
    args = ap.parse_args()
    global DEVICE
    if args.cpu_smoke:
        DEVICE = torch.device("cpu")
    elif not torch.cuda.is_available():
        print("no CUDA device: this benchmark needs one", file=sys.stderr)
        return 2
    torch.backends.cudnn.benchmark = True
    name = "CPU (smoke run)"
    if DEVICE.type == "cuda":
        props = torch.cuda.get_device_properties(0)
        name = f"{props.name}, {props.total_memory / 2**30:.0f} GiB"
    lines = [
        f"Device: {name}, torch {torch.__version__}, "
        f"cuDNN {torch.backends.cudnn.version()}. Command: python {' '.join(sys.argv)}",
        "",
        "Inference (eval mode, channels_last; one 10-crop image = 10 crops):",
        "",
        *inference_table(args.batches, args.iters),
        "",
        "Training steps (SGD, forward + backward + update):",
        "",
        *training_table(args.train_batches, args.iters),
    ]
    text = "\n".join(lines)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
