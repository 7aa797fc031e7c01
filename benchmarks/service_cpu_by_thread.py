"""Where the service's CPU goes, per image, by thread: the event loop (HTTP, routing, JSON), the
decode threads (JPEG decode, resize, normalise), and ONNX Runtime (the inference thread and its
intra-op pool). A diagnostic beside bench_service.py: it starts a real server on loopback, loads it
with the same keep-alive load generator, and reads each thread's CPU time from /proc. Thread names
come from ``py-spy dump`` (``pip install py-spy``); threads without Python frames are ONNX
Runtime's pool.

    python benchmarks/service_cpu_by_thread.py --route /classify --mode center --clients 16 --seconds 15
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_args  # noqa: E402
import bench_service  # noqa: E402


def py_spy() -> str | None:
    """py-spy on PATH, or beside this Python (a virtualenv's bin/)."""
    beside = Path(sys.executable).parent / "py-spy"
    return shutil.which("py-spy") or (str(beside) if beside.is_file() else None)


def thread_names(pid: int, spy: str) -> dict[str, str]:
    dump = subprocess.run([spy, "dump", "-p", str(pid)], capture_output=True, text=True, check=True).stdout
    return {tid: name for tid, name in re.findall(r'Thread (\d+) \(\w+\): "([^"]+)"', dump)}


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds of each thread of ``pid``, by thread id."""
    seconds = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            fields = Path(f"/proc/{pid}/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        seconds[tid] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return seconds


def by_group(seconds: dict[str, float], names: dict[str, str]) -> collections.Counter[str]:
    """Seconds by thread group (a name without its number; threads py-spy does not know: ORT)."""
    groups: collections.Counter[str] = collections.Counter()
    for tid, spent in seconds.items():
        groups[names.get(tid, "onnxruntime pool").rstrip("0123456789_")] += spent
    return groups


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    bench_args.add_model_args(parser)
    parser.add_argument("--route", default="/classify", choices=["/classify", "/similar"])
    parser.add_argument("--mode", default="center", choices=["center", "ten_crop"])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--env", action="append", default=[], metavar="ALEXNET_X=VALUE")
    args = parser.parse_args(argv)
    spy = py_spy()
    if spy is None:
        parser.error("needs py-spy (pip install py-spy) to name the threads")

    images = bench_service.load_images(args.data_root, 32)
    port = bench_service.free_port()
    with tempfile.TemporaryDirectory() as tmp:
        server = bench_service.start_server(args, port, Path(tmp) / "server.log")
        try:
            asyncio.run(bench_service.warm_up(port, args.route, args.mode, images))
            before = thread_cpu(server.pid)
            load = asyncio.run(
                bench_service.load_test([port], args.route, args.mode, args.clients, images, args.seconds)
            )
            after = thread_cpu(server.pid)
            # named after the load: the thread pools start their threads as work comes
            names = thread_names(server.pid, spy)
        finally:
            server.terminate()
            server.wait(30)
    done = max(len(load.latencies), 1)
    print(f"{args.route} {args.mode}, {args.clients} clients: {load.rate:.1f} img/s, {load.errors} errors")
    print("| thread group | CPU ms per image |\n|---|---:|")
    spent = by_group({tid: after[tid] - before.get(tid, 0.0) for tid in after}, names)
    for group, seconds in spent.most_common():
        if seconds * 1000 / done >= 0.01:
            print(f"| {group} | {seconds * 1000 / done:.2f} |")
    print(f"| all | {sum(spent.values()) * 1000 / done:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
