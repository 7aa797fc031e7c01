"""The deployment's start-up, measured: from an engine with none of the stack's images to a healthy stack
serving the shipped model through nginx, step by step, as docs/deployment.md tells a user to run it:

1. base images: the python:3.11-slim and nginx stand-ins (scripts/compose_stack.sh; Docker Hub is out of
   reach here; a machine that reaches it pulls the real ones instead);
2. the api image and 3. the train image (`docker compose build`);
4. the model: `docker compose --profile train run --rm train` (installs the shipped model: checksums,
   ONNX export, parity, the train80 gallery index);
5. `docker compose up --wait`: lb, the api replicas and api-writer healthy;
6. the first `/classify` through nginx on 127.0.0.1.

It runs twice: "cold" (the images and the build cache removed first: a fresh machine) and "warm" (the
same again with the images kept, as a redeploy), with the store volume removed before each, and prints
a markdown table with the warm/cold ratio of each step. It stops and removes its own stack (project
``alexnet-bench``) at the end, and the dockerd that the script started, if it did.

    python benchmarks/bench_compose_startup.py --out benchmarks/results/compose_startup_cpu.md

Needs root, docker.io, debootstrap, iptables and the Compose plugin (`.ci/run` installs them) and the
Caltech-101 copy (ALEXNET_DATASET_DIR, default ../shared/datasets/caltech101).
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "compose_stack.sh"
PROJECT = "alexnet-bench"
MODEL = "alexnet-caltech101"
IMAGES = ["alexnet-api:latest", "alexnet-train:latest", "python:3.11-slim", "nginx:1.28-alpine"]
PHOTO = Path("images/Faces/image_0004.jpg")  # relative to the dataset
STEPS = ["base images", "api image", "train image", "shipped model install", "up to healthy", "first /classify"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def cpu_name() -> str:
    """The CPU as /proc/cpuinfo names it, with its family/model and the vector extensions that matter here."""
    info: dict[str, str] = {}
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        key, _, value = line.partition(":")
        info.setdefault(key.strip(), value.strip())
    flags = set(info.get("flags", "").split())
    vector = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f in flags] or ["no AVX2"]
    return (
        f"{info.get('model name', platform.processor())} (family {info.get('cpu family')} model {info.get('model')}),"
        f" {os.cpu_count()} cores, {' '.join(vector)}"
    )


def stack(env: dict[str, str], *args: str) -> None:
    subprocess.run(["bash", str(SCRIPT), *args], env=env, check=True, stdout=subprocess.DEVNULL)


def remove_images(env: dict[str, str]) -> None:
    stack(env, "daemon-start")
    subprocess.run(["docker", "image", "rm", "--force", *IMAGES], capture_output=True)
    subprocess.run(["docker", "builder", "prune", "--all", "--force"], capture_output=True, check=True)
    subprocess.run(["docker", "image", "prune", "--force"], capture_output=True, check=True)


def one_pass(env: dict[str, str], url: str, photo: Path) -> dict[str, float]:
    """Seconds per step, the store volume removed first."""
    stack(env, "compose", "--profile", "train", "down", "--volumes", "--remove-orphans")
    timings: dict[str, float] = {}
    commands = [
        ("base images", ["base-images"]),
        ("api image", ["build"]),
        ("train image", ["build-train"]),
        ("shipped model install", ["compose", "--profile", "train", "run", "--rm", "-T", "train"]),
        ("up to healthy", ["compose", "up", "--detach", "--wait", "--wait-timeout", "300"]),
    ]
    for step, args in commands:
        started = time.monotonic()
        stack(env, *args)
        timings[step] = time.monotonic() - started
        print(f"  {step}: {timings[step]:.1f} s", file=sys.stderr)
    started = time.monotonic()
    with httpx.Client(base_url=url, timeout=120) as http:
        answer = http.post("/classify", files={"files": (photo.name, photo.read_bytes(), "image/jpeg")})
    timings["first /classify"] = time.monotonic() - started
    answer.raise_for_status()
    top = answer.json()["results"][0]["predictions"][0]
    print(f"  first /classify: {timings['first /classify']:.2f} s ({top['label']})", file=sys.stderr)
    return timings


def report(cold: dict[str, float], warm: dict[str, float]) -> str:
    rows = [
        "| step | cold (s) | warm (s) | warm / cold |",
        "|---|---:|---:|---:|",
    ]
    for step in [*STEPS, "total"]:
        c = sum(cold.values()) if step == "total" else cold[step]
        w = sum(warm.values()) if step == "total" else warm[step]
        rows.append(f"| {step} | {c:.1f} | {w:.1f} | {w / c:.2f} |")
    return "\n".join(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, help="markdown report (printed either way)")
    default_dataset = os.environ.get("ALEXNET_DATASET_DIR", str(REPO.parent / "shared/datasets/caltech101"))
    parser.add_argument("--dataset", type=Path, default=Path(default_dataset))
    args = parser.parse_args()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ALEXNET_", "COMPOSE_", "DOCKER_"))}
    env |= {
        "COMPOSE_PROJECT_NAME": PROJECT,
        "ALEXNET_PORT": str(port),
        "ALEXNET_DATASET_DIR": str(args.dataset.resolve()),
        "ALEXNET_MODEL_NAME": MODEL,
    }
    url = f"http://127.0.0.1:{port}"
    photo = args.dataset / PHOTO
    load_before = os.getloadavg()[0]
    try:
        print("cold: removing the stack's images and the build cache", file=sys.stderr)
        remove_images(env)
        cold = one_pass(env, url, photo)
        print("warm: the images kept", file=sys.stderr)
        warm = one_pass(env, url, photo)
    finally:
        stack(env, "down", "--volumes")
    text = "\n".join(
        [
            "# Deployment start-up: nothing to a healthy stack serving the shipped model",
            "",
            f"- date: {datetime.date.today()}; CPU: {cpu_name()}; commit {git_head()}",
            f"- load average (1 min) before / after: {load_before:.1f} / {os.getloadavg()[0]:.1f}",
            "- command: `python benchmarks/bench_compose_startup.py" + (f" --out {args.out}`" if args.out else "`"),
            "- cold: the stack's images and the build cache removed first (a fresh machine); warm: images kept."
            " The store volume is removed before each pass. Base images are Debian stand-ins made by"
            " scripts/compose_stack.sh (no Docker Hub here). pip and apt read this machine's package mirrors.",
            "",
            report(cold, warm),
            "",
        ]
    )
    print(text)
    if args.out:
        args.out.write_text(text)
    return 0


def git_head() -> str:
    done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True)
    return done.stdout.strip() or "unknown"


if __name__ == "__main__":
    sys.exit(main())
