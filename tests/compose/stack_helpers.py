"""The docker-compose stack, built and run for real (scripts/compose_stack.sh), for tests/compose.

``stack`` (one per test session) makes the images (stand-in base images the first time on a machine, our
images from the layer cache after that), publishes the session's tiny model into the stack's store
volume with a one-shot container, starts lb, two api replicas and api-writer, and waits until Docker
calls them all healthy. Its teardown runs whatever happened: ``compose down --volumes`` (containers,
network, volume) and then the dockerd that the script started, if it did.

Nothing here skips. Without Docker (or debootstrap, or the Compose plugin) the tests fail and say which
install step is missing: `.ci/run` installs them all; a developer runs `sudo bash .ci/run` once, or the
tests they want (`pytest tests/service`) rather than these.

Traffic goes to 127.0.0.1 only: lb's published port on the host, and each container's own loopback
through `docker exec`.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPT = REPO_ROOT / "scripts" / "compose_stack.sh"
PROJECT = "alexnet-e2e"  # not the user's `alexnet` stack, if one runs on this machine
STORE_UID = 10001  # the Dockerfiles' alexnet user
API_KEY = "compose-e2e-key-0123456789"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def fail_without(tool: str, install: str) -> None:
    if not (shutil.which(tool) or shutil.which(tool, path="/usr/sbin:/usr/local/sbin")):
        pytest.fail(f"{tool} is not installed: {install} (`bash .ci/run` installs it)", pytrace=False)


def run(argv: list[str], *, env: dict[str, str] | None = None, timeout: float = 600, check: bool = True,
        input: str | None = None) -> subprocess.CompletedProcess[str]:  # fmt: skip
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout, input=input)
    if check and done.returncode != 0:
        raise AssertionError(
            f"{' '.join(argv)} exited {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}"
        )
    return done


@dataclass
class Stack:
    env: dict[str, str]
    url: str
    model: Any  # tests/conftest.py's TinyModel
    timings: dict[str, float] = field(default_factory=dict)

    def script(self, *args: str, timeout: float = 900, check: bool = True) -> subprocess.CompletedProcess[str]:
        return run(["bash", str(SCRIPT), *args], env=self.env, timeout=timeout, check=check)

    def compose(self, *args: str, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.script("compose", *args, timeout=timeout, check=check)

    def up(self, *args: str) -> None:
        """``compose up --wait``: returns once every container is healthy."""
        self.compose("up", "--detach", "--wait", "--wait-timeout", "240", *args, timeout=300)

    def containers(self, service: str) -> list[str]:
        ids = self.compose("ps", "--quiet", service).stdout.split()
        return sorted(ids, key=self.name)

    def name(self, container: str) -> str:
        return self.inspect(container)["Name"].lstrip("/")

    def inspect(self, container: str) -> dict[str, Any]:
        return json.loads(run(["docker", "inspect", container]).stdout)[0]

    def exec(
        self, container: str, *argv: str, user: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        return run(["docker", "exec", *(["--user", user] if user else []), container, *argv], check=check, timeout=60)

    def get_inside(self, container: str, path: str) -> tuple[int, Any]:
        """GET http://127.0.0.1:8000{path} from inside the container (a replica is not published):
        (status, JSON body or None)."""
        script = (
            "import json, sys, urllib.request, urllib.error\n"
            "try:\n"
            f"    r = urllib.request.urlopen('http://127.0.0.1:8000{path}', timeout=10)\n"
            "    status, body = r.status, r.read()\n"
            "except urllib.error.HTTPError as e:\n"
            "    status, body = e.code, e.read()\n"
            "try:\n"
            "    body = json.loads(body)\n"
            "except ValueError:\n"
            "    body = None\n"
            "print(json.dumps([status, body]))\n"
        )
        status, body = json.loads(self.exec(container, "python", "-c", script).stdout)
        return status, body

    def client(self, **kwargs: Any) -> Any:
        from alexnet_client import Client

        return Client(self.url, **kwargs)


def wait_for(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(1)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


@pytest.fixture(scope="session")
def stack(tiny_model: Any) -> Iterator[Stack]:
    fail_without("docker", "apt-get install docker.io")
    fail_without("dockerd", "apt-get install docker.io")
    fail_without("debootstrap", "apt-get install debootstrap")
    fail_without("iptables", "apt-get install iptables")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ALEXNET_", "COMPOSE_", "DOCKER_"))}
    env |= {
        "COMPOSE_PROJECT_NAME": PROJECT,
        "ALEXNET_PORT": str(port),
        "ALEXNET_API_KEY": API_KEY,
        "ALEXNET_MODEL_NAME": tiny_model.name,
        "ALEXNET_DATASET_DIR": str(tiny_model.data_root),
    }
    stack = Stack(env, f"http://127.0.0.1:{port}", tiny_model)
    try:
        started = time.monotonic()
        stack.script("build", timeout=3600)  # the first time on a machine: stand-ins and pip installs
        stack.timings["build"] = time.monotonic() - started
        # a stack of this project left over from an interrupted run
        stack.compose("--profile", "train", "down", "--volumes", "--remove-orphans", timeout=300)
        # the store volume holds the tiny model before anything serves it: a one-shot copies it in
        # (as root, since pytest's folders are private, and then hands it to the alexnet user)
        started = time.monotonic()
        stack.compose(
            "run", "--rm", "--no-deps", "-T", "--user", "0", "--volume", f"{tiny_model.store_root}:/seed:ro",
            "--entrypoint", "sh", "api-writer",
            "-c", f"cp -R /seed/. /store/ && chown -R {STORE_UID}:{STORE_UID} /store",
        )  # fmt: skip
        stack.up()
        stack.timings["up"] = time.monotonic() - started
        print(f"\ncompose stack: images {stack.timings['build']:.0f}s, up to healthy {stack.timings['up']:.0f}s",
              file=sys.stderr)  # fmt: skip
        yield stack
    finally:
        logs = stack.compose("logs", "--no-color", "--tail", "30", check=False, timeout=120)
        print(logs.stdout[-6000:], file=sys.stderr)
        # containers, network and volume, then the dockerd the script started (if it did)
        stack.script("down", "--volumes", check=False, timeout=300)


@pytest.fixture
def http(stack: Stack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.url, timeout=60) as client:
        yield client
