"""Service throughput and latency next to raw ONNX Runtime, measured in one run on this machine.

For /classify (ten_crop and center) and /similar (center) at 1, 4 and 16 concurrent clients, each
request carrying one real Caltech-101 test image, it measures images/s and p50/p99 latency
against a real server (``python -m service``) on loopback. The baseline is ONNX Runtime alone
(same session options as the service, no HTTP, no decoding) on the batch shape a perfect batcher
would form: ``clients`` images of 10 or 1 crops (at most batch_max_size crops). The ratio is
service img/s / raw img/s.

Needs a published model (/similar searches the version's gallery, if it has one). Bounded:
``--requests`` per scenario and ``--max-seconds`` for each measurement.

    python benchmarks/bench_service.py --store-root store --model-name alexnet-caltech101 --requests 64
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import logging
import os
import platform
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import onnxruntime as ort

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from model_store.store import load_version  # noqa: E402
from service.engine import OnnxModel  # noqa: E402
from service.settings import Settings  # noqa: E402
from training.index import gallery_images  # noqa: E402

log = logging.getLogger("bench_service")
SCENARIOS = (("/classify", "ten_crop"), ("/classify", "center"), ("/similar", "center"))
CROPS = {"ten_crop": 10, "center": 1}
MIN_RAW_SECONDS = 2.0


@dataclass(frozen=True)
class Result:
    route: str
    mode: str
    clients: int
    requests: int
    errors: int
    images_per_s: float
    p50_ms: float
    p99_ms: float
    raw_images_per_s: float


def machine() -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} logical CPUs (nproc), {platform.system()} {platform.machine()}"


def load_images(data_root: Path, count: int) -> list[tuple[str, bytes]]:
    """``count`` test-split images spread over the classes."""
    paths = [p for _, p in gallery_images(data_root, "test30", per_class=1)][:count]
    return [(p.name, p.read_bytes()) for p in paths]


def raw_throughput(model: OnnxModel, crops: np.ndarray, images: int, min_images: int, max_seconds: float) -> float:
    """Images/s of ONNX Runtime alone on batches of ``images`` images (``crops`` rows): at least
    ``min_images`` and MIN_RAW_SECONDS, at most ``max_seconds``."""
    model.run(crops)  # warm-up for this shape
    done, started = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - started) < max_seconds and (done < min_images or elapsed < MIN_RAW_SECONDS):
        model.run(crops)
        done += images
    return done / (time.perf_counter() - started)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(args: argparse.Namespace, port: int, log_path: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALEXNET_")}
    env |= {
        "ALEXNET_STORE_ROOT": str(args.store_root.resolve()),
        "ALEXNET_MODEL_NAME": args.model_name,
        "ALEXNET_MODEL_VERSION": args.version,
        "ALEXNET_HOST": "127.0.0.1",
        "ALEXNET_PORT": str(port),
        "ALEXNET_ACCESS_LOG": "false",
        "ALEXNET_LOG_LEVEL": "warning",
        "ALEXNET_PROVIDERS": "cpu",
    }
    with open(log_path, "wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "service"], cwd=REPO_ROOT, env=env, stdout=out, stderr=out)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the service exited:\n{log_path.read_text()[-3000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                return process
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    process.kill()
    raise RuntimeError("the service was not ready in 180 s")


async def load_test(
    url: str, route: str, mode: str, clients: int, images: list[tuple[str, bytes]], requests: int, max_seconds: float
) -> tuple[list[float], int, float]:
    """(latencies in s of the successful requests, errors, wall seconds)."""
    field, param = ("files", "tta") if route == "/classify" else ("file", "feature")
    latencies: list[float] = []
    errors = 0
    issued = 0
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)

    async with httpx.AsyncClient(base_url=url, timeout=300, limits=limits) as http:

        async def one(i: int) -> None:
            nonlocal errors
            name, data = images[i % len(images)]
            started = time.perf_counter()
            response = await http.post(route, files={field: (name, data, "image/jpeg")}, data={param: mode})
            if response.status_code == 200:
                latencies.append(time.perf_counter() - started)
            else:
                errors += 1
                log.warning("%s %s: %d %s", route, mode, response.status_code, response.text[:200])

        await asyncio.gather(*(one(i) for i in range(min(clients, 2))))  # warm connections, not counted
        latencies.clear()
        errors = 0
        deadline = time.perf_counter() + max_seconds
        started = time.perf_counter()

        async def worker() -> None:
            nonlocal issued
            while issued < requests and time.perf_counter() < deadline:
                issued += 1
                await one(issued)

        await asyncio.gather(*(worker() for _ in range(clients)))
        return latencies, errors, time.perf_counter() - started


def table(results: list[Result]) -> str:
    rows = [
        "| route | tta / feature | clients | requests | errors | service img/s | p50 ms | p99 ms "
        "| raw ORT img/s (same batch) | ratio |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        rows.append(
            f"| {r.route} | {r.mode} | {r.clients} | {r.requests} | {r.errors} | {r.images_per_s:.1f} "
            f"| {r.p50_ms:.0f} | {r.p99_ms:.0f} | {r.raw_images_per_s:.1f} "
            f"| {r.images_per_s / r.raw_images_per_s:.2f} |"
        )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store-root", type=Path, default=Path("store"), help="model store folder")
    parser.add_argument("--model-name", default="alexnet-caltech101")
    parser.add_argument("--version", default="latest")
    default_data = os.environ.get("ALEXNET_DATA") or REPO_ROOT.parent / "shared" / "datasets" / "caltech101"
    parser.add_argument("--data-root", type=Path, default=Path(default_data), help="Caltech-101 (env ALEXNET_DATA)")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16], help="concurrency levels")
    parser.add_argument("--requests", type=int, default=64, help="requests (one image each) per scenario")
    parser.add_argument("--max-seconds", type=float, default=60, help="time limit per scenario")
    parser.add_argument("--images", type=int, default=32, help="distinct test images to cycle through")
    parser.add_argument("--output", type=Path, default=REPO_ROOT / "benchmarks" / "results" / "service_cpu.md")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)

    load_before = os.getloadavg()
    version = load_version(args.store_root, args.model_name, args.version)
    images = load_images(args.data_root, args.images)
    preprocessor = version.preprocessor()
    crops = {mode: np.concatenate([preprocessor.crops(data, mode) for _, data in images]) for mode in CROPS}

    model = OnnxModel(version, "cpu")
    max_crops = Settings(_env_file=None).batch_max_size  # the server runs with the defaults
    raw: dict[tuple[str, int], float] = {}
    for mode, per_image in CROPS.items():
        for clients in args.clients:
            per_batch = min(clients, max_crops // per_image)  # the biggest batch the service forms
            batch = np.ascontiguousarray(np.resize(crops[mode], (per_batch * per_image, *crops[mode].shape[1:])))
            raw[mode, clients] = raw_throughput(model, batch, per_batch, args.requests, args.max_seconds)
            log.info("raw ORT %s, %d images per run: %.1f img/s", mode, per_batch, raw[mode, clients])
    del model

    port = free_port()
    server_log = args.output.with_suffix(".server.log")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    server = start_server(args, port, server_log)
    results = []
    try:
        for route, mode in SCENARIOS:
            for clients in args.clients:
                latencies, errors, wall = asyncio.run(
                    load_test(f"http://127.0.0.1:{port}", route, mode, clients, images, args.requests, args.max_seconds)
                )
                ms = np.array(latencies or [float("nan")]) * 1000
                result = Result(
                    route, mode, clients, len(latencies) + errors, errors, len(latencies) / wall,
                    float(np.percentile(ms, 50)), float(np.percentile(ms, 99)), raw[mode, clients],
                )  # fmt: skip
                log.info("%s", result)
                results.append(result)
    finally:
        server.terminate()
        server.wait(30)
    server_log.unlink(missing_ok=True)

    report = "\n".join(
        [
            "# Service benchmark (CPU)",
            "",
            f"- date: {datetime.datetime.now().isoformat(timespec='seconds')}",
            f"- machine: {machine()}",
            f"- load average before the run (1/5/15 min): {' / '.join(f'{x:.2f}' for x in load_before)}"
            " (a shared machine: other work competes for the same cores)",
            f"- model: {version.manifest.name}/{version.manifest.version} ({version.manifest.num_classes} classes),"
            f" onnxruntime {ort.__version__}, CPUExecutionProvider; service defaults (batch_max_size 64,"
            " batch_max_wait_ms 5); client and server on the same machine over loopback",
            f"- each request: one Caltech-101 test image ({len(images)} distinct, cycled); up to {args.requests}"
            f" requests or {args.max_seconds:.0f} s per row; p99 of few requests is close to the maximum",
            "- raw ORT: ONNX Runtime alone on batches of `clients` images (10 or 1 crops each, at most"
            f" {max_crops} crops: the biggest batch the service forms), inputs already preprocessed;"
            " ratio = service img/s / raw img/s (decoding, HTTP and the batching wait are the gap)",
            "",
            table(results),
            "",
        ]
    )
    args.output.write_text(report)
    print(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
