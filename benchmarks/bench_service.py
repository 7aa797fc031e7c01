"""Service throughput and latency next to the raw engines, measured in one run on this machine.

For /classify (ten_crop and center) and /similar (center) at 1, 4 and 16 concurrent clients, each
request carrying one real Caltech-101 test image, it measures images/s and p50/p99 latency
against a real server (``python -m service``) on loopback. The baseline is the raw engines, no
HTTP, no decoding: ONNX Runtime (same session options as the service) and, for /similar, one FAISS
search of the batch's vectors, on the batch shape a perfect batcher would form: ``clients`` images
of 10 or 1 crops (at most batch_max_size crops). The ratio is service img/s / raw img/s. The load
generator replays pre-built requests over keep-alive connections, so it costs the server's cores
little; its CPU time and the server's, per request, are in the table.

This machine's speed drifts (other work shares it), so each row interleaves ``--slices`` service
slices with raw runs (raw, service, raw, ..., raw) and compares each slice with the raw runs
around it; the table gives the lowest and highest ratio of one slice next to the row's ratio.

Needs a published model (/similar searches the version's gallery, if it has one). A row takes
about slices x slice_seconds + (slices + 1) x raw_seconds (twice the raw time when two layouts
are compared), plus the raw runs on the service's batch sizes.

    python benchmarks/bench_service.py --store-root store --model-name alexnet-caltech101
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import logging
import math
import os
import platform
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import onnxruntime as ort

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from bench_args import add_model_args, write_report  # noqa: E402

from model_store.gallery import Gallery  # noqa: E402
from model_store.store import load_version  # noqa: E402
from service.parallelism import Parallelism, plan_parallelism  # noqa: E402
from service.runtime import CPU, OnnxModel, OpenVinoModel, load_model  # noqa: E402
from service.settings import Settings  # noqa: E402
from training.index import gallery_images  # noqa: E402

log = logging.getLogger("bench_service")
SCENARIOS = (("/classify", "ten_crop"), ("/classify", "center"), ("/similar", "center"))
CROPS = {"ten_crop": 10, "center": 1}
DEFAULT_K = 6  # /similar's default k, what the load test asks for


@dataclass(frozen=True)
class Result:
    route: str
    mode: str
    clients: int
    requests: int
    errors: int
    images_per_s: float  # in the slices' steady windows
    p50_ms: float
    p99_ms: float
    raw_images_per_s: float  # on batches of ``ideal_batch`` images, the faster layout, around the slices
    raw_layout: str  # which layout of runs and threads gave raw_images_per_s
    ideal_batch: int  # images per run of a perfect batcher: all clients' images, up to the crop limit
    service_batch: float  # images per run that the service formed, on average (from /metrics)
    raw_same_batches_per_s: float  # on batches of ``service_batch`` images, on average
    client_cpu_ms: float  # the load generator's CPU time per request
    server_cpu_ms: float  # the service process's CPU time per image (all its threads)
    ratio_low: float  # the lowest and highest ratio of one slice to the raw runs around it
    ratio_high: float


def gpu_name() -> str | None:
    try:
        names = subprocess.run(
            ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True, timeout=10
        ).stdout.split("\n")
    except (OSError, subprocess.SubprocessError):
        return None
    return ", ".join(name for name in names if name) or None


def machine() -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = gpu_name()
    gpus = f"; GPU: {gpu}" if gpu else ""
    return f"{model}, {os.cpu_count()} logical CPUs (nproc), {platform.system()} {platform.machine()}{gpus}"


def layout_name(layout: Parallelism) -> str:
    threads = f"{layout.threads} thread{'s' * (layout.threads != 1)}" if layout.threads else "runtime's threads"
    return f"{layout.workers} run{'s' * (layout.workers != 1)} x {threads}"


@dataclass(frozen=True)
class RawEngine:
    """A model run the way the service runs it: ``workers`` runs at once."""

    model: OnnxModel | OpenVinoModel
    workers: int
    layout: str

    def runner(self, crops: np.ndarray, gallery: Gallery | None) -> Callable[[], object]:
        """One share of a batch: the model (and, for /similar, one FAISS search of its fc7 vectors)."""
        if gallery is not None:
            return lambda: gallery.search(self.model.run(crops)[1], DEFAULT_K)
        return lambda: self.model.run(crops)


def load_images(data_root: Path, count: int) -> list[tuple[str, bytes]]:
    """``count`` test-split images spread over the classes."""
    paths = [p for _, p in gallery_images(data_root, "test30", per_class=1)][:count]
    return [(p.name, p.read_bytes()) for p in paths]


def raw_throughput(
    runs: Sequence[tuple[Callable[[], object], float]], min_images: int, min_seconds: float, max_seconds: float
) -> float:
    """Images/s of ``runs``, (run, images per call) pairs, each calling its run in a loop on its own
    thread, side by side: at least ``min_images`` and ``min_seconds``, at most ``max_seconds``."""
    for run, _ in runs:
        run()  # warm-up for this shape
    done = [0.0] * len(runs)
    stop = threading.Event()

    def loop(i: int) -> None:
        run, images = runs[i]
        while not stop.is_set():
            run()
            done[i] += images

    threads = [threading.Thread(target=loop, args=(i,)) for i in range(len(runs))]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    while (elapsed := time.perf_counter() - started) < max_seconds and (
        sum(done) < min_images or elapsed < min_seconds
    ):
        time.sleep(0.02)
    stop.set()
    for thread in threads:
        thread.join()
    return sum(done) / (time.perf_counter() - started)


def process_cpu_seconds(pid: int) -> float:
    """user + system CPU seconds of a process, all threads (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


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
    env |= dict(item.split("=", 1) for item in args.env)
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


def multipart_request(route: str, field: str, name: str, data: bytes, param: str, mode: str) -> bytes:
    """One complete HTTP/1.1 request (keep-alive) with a multipart body, built once and replayed."""
    boundary = "benchboundary7d1c0f"
    body = b"".join(
        [
            f'--{boundary}\r\nContent-Disposition: form-data; name="{param}"\r\n\r\n{mode}\r\n'.encode(),
            f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="{name}"\r\n'.encode(),
            b"Content-Type: image/jpeg\r\n\r\n",
            data,
            f"\r\n--{boundary}--\r\n".encode(),
        ]
    )
    head = (
        f"POST {route} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; boundary={boundary}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bool, bytes]:
    """(status, connection closes, body) of one HTTP/1.1 response with a Content-Length."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return status, headers.get("connection", "").lower() == "close", body


async def warm_up(port: int, route: str, mode: str, images: list[tuple[str, bytes]]) -> None:
    """Two requests through the server's path, not counted."""
    field, param = ("files", "tta") if route == "/classify" else ("file", "feature")
    name, data = images[0]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for _ in range(2):
            writer.write(multipart_request(route, field, name, data, param, mode))
            await read_response(reader)
    finally:
        writer.close()


def batch_counts(ports: Sequence[int]) -> tuple[float, float]:
    """(inference runs, images in them) so far, from the /metrics of every replica."""
    values = dict.fromkeys(("alexnet_inference_batch_images_count", "alexnet_inference_batch_images_sum"), 0.0)
    for port in ports:
        for line in httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text.splitlines():
            name, _, value = line.partition(" ")
            if name in values:
                values[name] += float(value)
    return values["alexnet_inference_batch_images_count"], values["alexnet_inference_batch_images_sum"]


@dataclass
class Slice:
    """One stretch of load: clients send back to back for ``seconds``, then finish what they sent."""

    latencies: list[float]  # seconds, of every successful request
    errors: int
    steady_images: int  # completed after every client had its first answer, before sending stopped
    steady_seconds: float  # from that first answer to the last of them (0: too short a slice for this load)
    client_cpu: float  # this process's CPU seconds

    @property
    def rate(self) -> float:
        return self.steady_images / self.steady_seconds if self.steady_seconds > 0 else float("nan")


async def load_test(
    ports: Sequence[int], route: str, mode: str, clients: int, images: list[tuple[str, bytes]], seconds: float
) -> Slice:
    """``clients`` closed-loop clients for ``seconds``; the rate counts only the steady window, from
    the moment every client has had its first answer (the ramp-up) to the last answer before sending
    stops (the drain of the last requests is not counted either).

    A lean load generator: each client holds one keep-alive connection and replays pre-built
    requests, parsing only the status line and headers, so on a machine this small the client
    costs the server as little CPU as possible (its CPU time is reported next to the results).
    With several replicas, client i talks to replica i mod len(ports), as a load balancer would
    spread connections."""
    field, param = ("files", "tta") if route == "/classify" else ("file", "feature")
    payloads = [multipart_request(route, field, name, data, param, mode) for name, data in images]
    latencies: list[float] = []
    finished: list[float] = []  # when each successful request ended
    first_answers: list[float] = []
    errors = issued = 0

    async def client(port: int) -> None:
        nonlocal errors, issued
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        first = True
        try:
            while time.perf_counter() < stop:
                i = issued
                issued += 1
                started = time.perf_counter()
                writer.write(payloads[i % len(payloads)])
                status, closes, body = await read_response(reader)
                ended = time.perf_counter()
                if first:
                    first_answers.append(ended)
                    first = False
                if status == 200:
                    latencies.append(ended - started)
                    finished.append(ended)
                else:
                    errors += 1
                    log.warning("%s %s: %d %s", route, mode, status, body[:200])
                if closes:
                    writer.close()
                    reader, writer = await asyncio.open_connection("127.0.0.1", port)
        finally:
            writer.close()

    cpu, stop = time.process_time(), time.perf_counter() + seconds
    await asyncio.gather(*(client(ports[i % len(ports)]) for i in range(clients)))
    # from one answer to another, so that whole batches fall in the window (ten crops of 6 images
    # finish together: a window ending mid-period would miscount by up to a batch)
    steady_from = max(first_answers) if len(first_answers) == clients else stop
    steady = [t for t in finished if steady_from < t <= stop]
    seconds = max(steady) - steady_from if steady else 0.0
    return Slice(latencies, errors, len(steady), seconds, time.process_time() - cpu)


def table(results: list[Result]) -> str:
    rows = [
        "| route | tta / feature | clients | requests | errors | service img/s | p50 ms | p99 ms "
        "| raw img/s, perfect batches (images; the faster layout) | **ratio** | ratio of one slice, lowest-highest "
        "| service's mean batch (of one replica) | raw img/s, service's batches "
        "| ratio, same batches | server CPU ms/img | client CPU ms/req |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        rows.append(
            f"| {r.route} | {r.mode} | {r.clients} | {r.requests} | {r.errors} | {r.images_per_s:.1f} "
            f"| {r.p50_ms:.0f} | {r.p99_ms:.0f} | {r.raw_images_per_s:.1f} ({r.ideal_batch}; {r.raw_layout}) "
            f"| **{r.images_per_s / r.raw_images_per_s:.2f}** | {r.ratio_low:.2f}-{r.ratio_high:.2f} "
            f"| {r.service_batch:.1f} | {r.raw_same_batches_per_s:.1f} "
            f"| {r.images_per_s / r.raw_same_batches_per_s:.2f} | {r.server_cpu_ms:.0f} | {r.client_cpu_ms:.1f} |"
        )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_model_args(parser)
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16], help="concurrency levels")
    parser.add_argument(
        "--scenarios",
        nargs="+",
        default=[f"{route}:{mode}" for route, mode in SCENARIOS],
        choices=[f"{route}:{mode}" for route, mode in SCENARIOS],
        help="which of route:mode to run",
    )
    parser.add_argument("--slices", type=int, default=3, help="service slices per row, each between raw runs")
    parser.add_argument("--slice-seconds", type=float, default=10, help="length of one service slice")
    parser.add_argument("--raw-seconds", type=float, default=5, help="length of one raw run (at least one batch)")
    parser.add_argument("--images", type=int, default=32, help="distinct test images to cycle through")
    parser.add_argument(
        "--replicas",
        type=int,
        default=1,
        help="service processes (replicas, each its own port, as behind a load balancer); clients spread over them",
    )
    parser.add_argument(
        "--env", action="append", default=[], metavar="ALEXNET_X=VALUE", help="a service setting (repeatable)"
    )
    parser.add_argument("--output", type=Path, default=REPO_ROOT / "benchmarks" / "results" / "service_cpu.md")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)

    load_before = os.getloadavg()
    version = load_version(args.store_root, args.model_name, args.version)
    images = load_images(args.data_root, args.images)
    preprocessor = version.preprocessor()
    crops = {mode: np.concatenate([preprocessor.crops(data, mode) for _, data in images]) for mode in CROPS}

    overrides = dict(item.split("=", 1) for item in args.env)
    # the raw engine: the service's runtime, precision and session options, without the service
    settings = Settings(
        _env_file=None, **({"providers": "cpu"} | {k.lower().removeprefix("alexnet_"): v for k, v in overrides.items()})
    )
    model = load_model(version, settings)
    # as the service builds it; replicas run side by side, so raw runs do too (replicas x workers)
    layout = Parallelism(settings.inference_workers * args.replicas, model.threads)
    engines = {"service": RawEngine(model, layout.workers, layout_name(layout))}
    one_run = Settings(_env_file=None, **(settings.model_dump() | {"inference_workers": 1, "intra_op_threads": 0}))
    one_layout = plan_parallelism(one_run, onnxruntime_cpu=model.provider == CPU)
    if one_layout != layout:  # also the other way to use the cores: the best of both is the baseline
        engines["one run"] = RawEngine(load_model(version, one_run), 1, layout_name(one_layout))
    max_crops = settings.batch_max_size
    gallery = Gallery.load(version.index_dir) if version.index_dir.is_dir() else None

    def raw_rate(route: str, mode: str, per_batch: int, engine: RawEngine) -> float:
        """Images/s of the raw engines on batches of ``per_batch`` images, run as the service runs a
        batch that finds all its workers idle: split by rows, one share per worker, side by side."""
        per_image = CROPS[mode]
        batch = np.ascontiguousarray(np.resize(crops[mode], (per_batch * per_image, *crops[mode].shape[1:])))
        shares = np.array_split(batch, min(engine.workers, len(batch)))
        searched = gallery if route == "/similar" else None
        runs = [(engine.runner(share, searched), len(share) / per_image) for share in shares]
        rate = raw_throughput(runs, 1, args.raw_seconds, 3 * args.raw_seconds)
        log.info("raw %s %s, %d images per batch, %s: %.1f img/s", route, mode, per_batch, engine.layout, rate)
        return rate

    def best_raw_rate(route: str, mode: str, per_batch: int) -> tuple[float, str]:
        rates = [(raw_rate(route, mode, per_batch, engine), engine.layout) for engine in engines.values()]
        return max(rates)

    def raw_rate_at_mean(route: str, mode: str, mean_batch: float) -> float:
        """Images/s of the raw engines (the service's layout) on batches averaging ``mean_batch``
        images: the time of a run interpolated between the two whole batch sizes around it (exact
        when time is affine in the batch size, close to it otherwise)."""
        low, high = math.floor(mean_batch), math.ceil(mean_batch)
        low_s = low / raw_rate(route, mode, low, engines["service"])
        high_s = low_s if high == low else high / raw_rate(route, mode, high, engines["service"])
        return mean_batch / (low_s + (mean_batch - low) * (high_s - low_s))

    def measure_row(route: str, mode: str, clients: int) -> Result:
        """Raw and service slices in turn (raw, service, raw, ..., raw), so both see the same
        machine: each service slice is compared with the mean of the raw runs around it."""
        ideal = min(clients, max_crops // CROPS[mode])  # the biggest batch the service can form
        raws = [best_raw_rate(route, mode, ideal)]
        for port in ports:
            asyncio.run(warm_up(port, route, mode, images))
        batches_before, server_cpu = batch_counts(ports), sum(process_cpu_seconds(s.pid) for s in servers)
        slices = []
        for _ in range(args.slices):
            slices.append(asyncio.run(load_test(ports, route, mode, clients, images, args.slice_seconds)))
            raws.append(best_raw_rate(route, mode, ideal))
        server_cpu = sum(process_cpu_seconds(s.pid) for s in servers) - server_cpu
        runs_after, batched_after = batch_counts(ports)
        runs, batched = runs_after - batches_before[0], batched_after - batches_before[1]
        mean_batch = batched / max(runs, 1)
        steady_seconds = sum(sl.steady_seconds for sl in slices)
        service = sum(sl.steady_images for sl in slices) / steady_seconds if steady_seconds else float("nan")
        # each slice's raw rate: the mean of the runs before and after it, weighted by its window
        around = [(raws[i][0] + raws[i + 1][0]) / 2 for i in range(len(slices))]
        weights = [sl.steady_seconds for sl in slices]
        raw = float(np.average(around, weights=weights)) if steady_seconds else float(np.mean(around))
        layouts = sorted({layout for _, layout in raws})
        ratios = [sl.rate / r for sl, r in zip(slices, around, strict=True) if sl.steady_seconds]
        # the same batch shapes as the service formed (on average): the gap is then the
        # per-request work (HTTP, decoding, queueing) alone
        # (with replicas, each forms batches of its own: side by side they are ``replicas`` times as big)
        all_replicas = mean_batch * args.replicas
        raw_same = raw if all_replicas >= ideal else raw_rate_at_mean(route, mode, max(all_replicas, 1.0))
        latencies = [t for sl in slices for t in sl.latencies]
        errors = sum(sl.errors for sl in slices)
        done = max(len(latencies), 1)
        ms = np.array(latencies or [float("nan")]) * 1000
        result = Result(
            route, mode, clients, len(latencies) + errors, errors, service,
            float(np.percentile(ms, 50)), float(np.percentile(ms, 99)), raw, " or ".join(layouts), ideal, mean_batch,
            raw_same, sum(sl.client_cpu for sl in slices) / done * 1000, server_cpu / done * 1000,
            min(ratios, default=float("nan")), max(ratios, default=float("nan")),
        )  # fmt: skip
        log.info("%s", result)
        return result

    args.output.parent.mkdir(parents=True, exist_ok=True)
    ports = [free_port() for _ in range(args.replicas)]
    server_logs = [args.output.with_suffix(f".server{i}.log") for i in range(args.replicas)]
    servers: list[subprocess.Popen[bytes]] = []
    results = []
    try:
        for port, server_log in zip(ports, server_logs, strict=True):
            servers.append(start_server(args, port, server_log))
        for route, mode in (scenario.split(":") for scenario in args.scenarios):
            for clients in args.clients:
                results.append(measure_row(route, mode, clients))
    finally:
        for server in servers:
            server.terminate()
        for server in servers:
            server.wait(30)
    for server_log in server_logs:
        server_log.unlink(missing_ok=True)

    report = "\n".join(
        [
            f"# Service benchmark ({'GPU' if model.provider != CPU else 'CPU'})",
            "",
            f"- date: {datetime.datetime.now().isoformat(timespec='seconds')}",
            f"- machine: {machine()}",
            f"- load average (1/5/15 min) before the run: {' / '.join(f'{x:.2f}' for x in load_before)}, after it:"
            f" {' / '.join(f'{x:.2f}' for x in os.getloadavg())} (a shared machine: other work competes for the cores)",
            f"- model: {version.manifest.name}/{version.manifest.version} ({version.manifest.num_classes} classes),"
            f" onnxruntime {ort.__version__}, {model.provider} ({model.precision}); {args.replicas} service"
            f" process{'es (replicas on ports of their own, clients spread over them)' * (args.replicas > 1)};"
            " service settings: the defaults"
            f"{' and ' + ', '.join(args.env) if args.env else ''}; client and server on the same machine over"
            " loopback (the load generator's and the service's CPU time per request are in the table)",
            f"- each request: one Caltech-101 test image ({len(images)} distinct, cycled). Each row interleaves"
            f" {args.slices} service slices of {args.slice_seconds:g} s with {args.slices + 1} raw runs of at least"
            f" {args.raw_seconds:g} s (raw, service, raw, ..., raw), so both see the same machine; a slice is"
            " compared with the mean of the raw runs around it. The service's img/s counts the steady window of"
            " each slice only: from the moment every client has had its first answer to the moment sending"
            " stops (no ramp-up, no drain); p50/p99 are over every request",
            "- raw engine: ONNX Runtime alone (for /similar: ONNX Runtime, then one FAISS search of the"
            " batch's fc7 vectors, k=6), inputs already decoded and cropped, split across the service's"
            " inference workers (of every replica, side by side) as the service splits a batch that finds them"
            " all idle, each worker running its"
            " share in a loop; for perfect batches, also one run at a time on all the CPUs' threads (ONNX"
            " Runtime's own layout), and the faster of the two is the baseline. Two baselines: **perfect"
            " batches** of `clients` images (10 or 1 crops each, at most"
            f" {max_crops} crops: the biggest batch the service can form), and **the service's batches**: runs of"
            " the mean size the service actually formed in that row (from its /metrics; the run time is"
            " interpolated between the two whole sizes around the mean). ratio = service img/s / raw img/s:"
            " against perfect batches the gap is decoding, HTTP, queueing and smaller batches; against the"
            " service's batches it is the per-request work alone",
            "",
            table(results),
            "",
        ]
    )
    write_report(args.output, report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
