"""Bounded load test of the service's back-pressure: below ``max_queue`` every request succeeds;
above it the surplus gets fast 503s with Retry-After, while the latency of the admitted requests and
the server's resident memory stay where they were.

Two phases of ``--seconds`` each, every client looping on POST /classify with one real image:
``below`` (at most ``max_queue`` images in flight, so none may be refused) and ``above`` (several
times ``max_queue`` clients; a client pauses ``--retry-pause`` after a 503 instead of honouring
Retry-After, to keep the pressure on). The server's VmRSS (/proc/<pid>/status) is read at the start,
every 0.25 s, and at the end. Loopback addresses only; it stops by itself.

    # starts its own server on a published model (store and name as for python -m service)
    python benchmarks/load_test.py --store-root store --model-name alexnet-caltech101 --max-queue 16
    # or an already running one on this machine
    python benchmarks/load_test.py --url http://127.0.0.1:8000 --pid 12345 --max-queue 64
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import datetime
import ipaddress
import os
import platform
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_IMAGE = REPO_ROOT.parent / "shared" / "datasets" / "caltech101" / "images" / "Faces" / "image_0004.jpg"
RSS_EVERY_S = 0.25


def require_loopback(url: str) -> str:
    """``url`` if its host is a loopback address (127.0.0.0/8, ::1, localhost); else ValueError."""
    host = urlsplit(url).hostname or ""
    if host != "localhost":
        try:
            if not ipaddress.ip_address(host).is_loopback:
                raise ValueError
        except ValueError:
            raise ValueError(f"{url}: this load test only targets loopback addresses") from None
    return url.rstrip("/")


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def machine() -> str:
    model = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
         if line.startswith("model name")),
        "unknown CPU",
    )  # fmt: skip
    return f"{model}, {os.cpu_count()} logical CPUs, {platform.system()} {platform.machine()}"


@dataclass
class Phase:
    name: str
    clients: int
    seconds: float = 0.0
    statuses: collections.Counter[int] = field(default_factory=collections.Counter)
    latencies: dict[int, list[float]] = field(default_factory=lambda: collections.defaultdict(list))
    without_retry_after: int = 0  # 503s that lack the header
    transport_errors: int = 0  # connection errors and client timeouts
    rss_after: float = 0.0  # server VmRSS (MiB) at the end of the phase

    @property
    def requests(self) -> int:
        return sum(self.statuses.values()) + self.transport_errors

    @property
    def failed(self) -> int:
        """Anything but 200 and the 503s of admission control (5xx, 4xx, transport errors)."""
        return self.requests - self.statuses[200] - self.statuses[503]

    def ms(self, status: int, q: float) -> float:
        values = self.latencies.get(status)
        return float(np.percentile(values, q) * 1000) if values else float("nan")


async def run_phase(
    url: str, phase: Phase, seconds: float, image: bytes, tta: str, timeout: float, retry_pause: float
) -> Phase:
    """``phase.clients`` clients posting /classify in a loop for ``seconds`` (requests in flight
    at the end are awaited: at most ``timeout`` more)."""
    limits = httpx.Limits(max_connections=phase.clients, max_keepalive_connections=phase.clients)
    deadline = time.monotonic() + seconds
    started = time.monotonic()
    async with httpx.AsyncClient(base_url=url, timeout=timeout, limits=limits) as http:

        async def client() -> None:
            while time.monotonic() < deadline:
                sent = time.perf_counter()
                try:
                    response = await http.post(
                        "/classify", files={"files": ("load.jpg", image, "image/jpeg")}, data={"tta": tta}
                    )
                except httpx.TransportError:
                    phase.transport_errors += 1
                    continue
                phase.statuses[response.status_code] += 1
                phase.latencies[response.status_code].append(time.perf_counter() - sent)
                if response.status_code == 503:
                    phase.without_retry_after += "retry-after" not in response.headers
                    await asyncio.sleep(retry_pause)

        await asyncio.gather(*(client() for _ in range(phase.clients)))
    phase.seconds = time.monotonic() - started
    return phase


@dataclass
class Report:
    phases: list[Phase]
    rss_start: float
    rss_peak: float
    rss_end: float


async def run_load(
    url: str, pid: int, below: int, above: int, seconds: float, image: bytes,
    tta: str = "ten_crop", timeout: float = 60.0, retry_pause: float = 0.01,
) -> Report:  # fmt: skip
    url = require_loopback(url)
    rss = [rss_mib(pid)]
    start = rss[0]

    async def sample() -> None:
        while True:
            await asyncio.sleep(RSS_EVERY_S)
            rss.append(rss_mib(pid))

    sampler = asyncio.create_task(sample())
    phases = []
    try:
        for name, clients in (("below max_queue", below), ("above max_queue", above)):
            phases.append(await run_phase(url, Phase(name, clients), seconds, image, tta, timeout, retry_pause))
            phases[-1].rss_after = rss_mib(pid)
    finally:
        sampler.cancel()
    end = rss_mib(pid)
    return Report(phases, start, max(rss + [end]), end)


def table(report: Report) -> str:
    rows = [
        "| phase | clients | s | requests | 200 | 503 | failed | 503 without Retry-After "
        "| 200 p50 / p99 ms | 503 p50 / p99 ms | VmRSS after, MiB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for p in report.phases:
        rows.append(
            f"| {p.name} | {p.clients} | {p.seconds:.0f} | {p.requests} | {p.statuses[200]} | {p.statuses[503]} "
            f"| {p.failed} | {p.without_retry_after} | {p.ms(200, 50):.0f} / {p.ms(200, 99):.0f} "
            f"| {p.ms(503, 50):.1f} / {p.ms(503, 99):.1f} | {p.rss_after:.0f} |"
        )
    rows.append("")
    rows.append(
        f"server VmRSS: {report.rss_start:.0f} MiB at the start, {report.rss_peak:.0f} MiB at the peak, "
        f"{report.rss_end:.0f} MiB at the end"
    )
    return "\n".join(rows)


def start_server(args: argparse.Namespace) -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALEXNET_")}
    env |= {
        "ALEXNET_STORE_ROOT": str(args.store_root.resolve()),
        "ALEXNET_MODEL_NAME": args.model_name,
        "ALEXNET_HOST": "127.0.0.1",
        "ALEXNET_PORT": str(port),
        "ALEXNET_ACCESS_LOG": "false",
        "ALEXNET_LOG_LEVEL": "warning",
        "ALEXNET_MAX_QUEUE": str(args.max_queue),
        "ALEXNET_MAX_FILES_PER_REQUEST": str(min(16, args.max_queue)),
    }
    process = subprocess.Popen([sys.executable, "-m", "service"], cwd=REPO_ROOT, env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return process, url
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    process.kill()
    raise RuntimeError("the service did not get ready")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--store-root", type=Path, help="start python -m service on this model store")
    where.add_argument("--url", help="a running server on this machine (loopback only); give --pid too")
    parser.add_argument("--model-name", default="alexnet-caltech101")
    parser.add_argument("--pid", type=int, help="the running server's process id (for VmRSS)")
    parser.add_argument("--max-queue", type=int, default=16, help="the server's ALEXNET_MAX_QUEUE")
    parser.add_argument("--below", type=int, help="clients below capacity (default: max_queue)")
    parser.add_argument("--above", type=int, help="clients above capacity (default: 4 x max_queue)")
    parser.add_argument("--seconds", type=float, default=20, help="length of each phase")
    parser.add_argument("--tta", choices=["ten_crop", "center"], default="ten_crop")
    parser.add_argument("--retry-pause", type=float, default=0.01, help="a client's pause after a 503, seconds")
    parser.add_argument("--image", type=Path, default=DEFAULT_IMAGE, help="the JPEG every request sends")
    parser.add_argument("--output", type=Path, help="also write the report (markdown) here")
    args = parser.parse_args(argv)
    if args.url and args.pid is None:
        parser.error("--url needs --pid")

    process = None
    if args.store_root:
        process, url = start_server(args)
        pid = process.pid
    else:
        url, pid = require_loopback(args.url), args.pid
    load_before = os.getloadavg()
    try:
        report = asyncio.run(
            run_load(
                url, pid, args.below or args.max_queue, args.above or 4 * args.max_queue, args.seconds,
                args.image.read_bytes(), args.tta, retry_pause=args.retry_pause,
            )
        )  # fmt: skip
    finally:
        if process is not None:
            process.terminate()
            process.wait(30)
    text = "\n".join(
        [
            f"- date: {datetime.datetime.now().isoformat(timespec='seconds')}",
            f"- machine: {machine()}; load average before the run (1/5/15 min): "
            + " / ".join(f"{x:.2f}" for x in load_before),
            f"- server: max_queue {args.max_queue}, other settings default; /classify tta={args.tta}, "
            f"one {args.image.name} ({args.image.stat().st_size} bytes) per request, {args.seconds:.0f} s per phase, "
            f"{args.retry_pause:g} s pause after a 503",
            "",
            table(report),
            "",
        ]
    )
    print(text)
    if args.output:
        args.output.write_text(text)
    failed = sum(p.failed for p in report.phases) + report.phases[0].statuses[503]
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
