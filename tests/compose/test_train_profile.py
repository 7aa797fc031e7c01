"""The `train` profile for real: its image builds (scripts/compose_stack.sh build-train), its entry point
runs, and a tiny training inside the container publishes a new version into the stack's store volume,
which api-writer then serves after POST /admin/reload; and the one-shot's default command installs the
shipped model, which the stack serves once it is started with that model's name (the last test: it
changes what the stack serves).

Runs after test_stack.py, on the same stack (stack_helpers.py).
"""

from __future__ import annotations

import time

import httpx
from image_helpers import CALTECH_SAMPLES
from stack_helpers import API_KEY, SCRIPT, Stack, run

SHIPPED = "alexnet-caltech101"  # shipped/alexnet-caltech101, the default model name

TRAIN = ("--profile", "train", "run", "--rm", "--no-deps", "-T")


def test_train_image_entry_point(stack: Stack) -> None:
    stack.script("build-train", timeout=3600)
    helped = stack.compose(*TRAIN, "train", "alexnet", "--help")
    for command in ("train", "publish", "build-default", "index"):
        assert command in helped.stdout
    who = stack.compose(*TRAIN, "--entrypoint", "id", "train", "-u").stdout.strip()
    assert who == "10001"  # the alexnet user, as in the api image, so both write the store volume
    torch = stack.compose(*TRAIN, "train", "python", "-c", "import torch; print(torch.__version__)").stdout
    assert torch.strip().startswith("2.13.0")


def test_tiny_training_in_the_container_is_served_after_reload(stack: Stack, http: httpx.Client) -> None:
    (writer,) = stack.containers("api-writer")
    before = stack.get_inside(writer, "/readyz")[1]["model"]
    tiny = (
        "alexnet train --classes 5 --epochs 1 --batch-size 8 --max-steps-per-epoch 2 --val-fraction 0.1"
        " --init kaiming --input-scale 0.015625 --warmup-epochs 0.5 --no-publish --out /runs/tiny --cache /runs/cache"
        f" && alexnet publish --run /runs/tiny --skip-eval --no-index --no-fast-paths --model-name {stack.model.name}"
        " --store-root /store"
    )
    published = stack.compose(*TRAIN, "--entrypoint", "sh", "train", "-c", tiny, timeout=1800)
    assert f"published {stack.model.name}/" in published.stdout, published.stdout[-2000:]
    new_version = published.stdout.split(f"published {stack.model.name}/")[1].split()[0]
    assert new_version != before["version"]

    assert http.post("/admin/reload").status_code == 401  # the writer's route: the key is needed
    reloaded = http.post("/admin/reload", headers={"X-API-Key": API_KEY})
    assert reloaded.status_code == 200, reloaded.text
    body = reloaded.json()
    assert body["reloaded"] is True and body["previous"]["version"] == before["version"]
    assert body["model"]["version"] == new_version
    status, ready = stack.get_inside(writer, "/readyz")
    assert status == 200 and ready["model"]["version"] == new_version
    # the replicas still serve the version they started with, until they restart (docs/scaling.md)
    for replica in stack.containers("api"):
        assert stack.get_inside(replica, "/readyz")[1]["model"]["version"] == before["version"]


def test_the_one_shot_installs_the_shipped_model_which_the_stack_then_serves(stack: Stack) -> None:
    """The README's deployment, as a user runs it: `docker compose --profile train run --rm train` installs
    the shipped model (no training), then the stack, started with that model's name, serves it."""
    started = time.monotonic()
    installed = stack.compose(*TRAIN, "train", timeout=1800)
    install_s = time.monotonic() - started
    assert f"published {SHIPPED}/v1" in installed.stdout + installed.stderr, installed.stderr[-3000:]
    again = stack.compose(*TRAIN, "train", timeout=600)  # the store has it now: nothing is done twice
    assert f"{SHIPPED} is already published" in again.stdout, again.stdout[-2000:]

    started = time.monotonic()
    shipped_env = stack.env | {"ALEXNET_MODEL_NAME": SHIPPED}
    run(["bash", str(SCRIPT), "compose", "up", "--detach", "--wait", "--wait-timeout", "240"], env=shipped_env,
        timeout=300)  # fmt: skip
    up_s = time.monotonic() - started
    print(f"\ntrain one-shot (shipped model install) {install_s:.0f}s, stack recreated on it {up_s:.0f}s")
    with stack.client() as client:
        for path in CALTECH_SAMPLES:  # training images (train80): the gallery holds each of them
            answer = client.classify(path)
            assert (answer.model.name, answer.model.version) == (SHIPPED, "v1")
            assert path.parent.name in [p.label for p in answer.results[0].predictions], answer.results[0]
            (nearest,) = client.similar(path, k=1).neighbors
            assert nearest.label == path.parent.name and nearest.distance < 1e-2, nearest
    for service in ("api", "api-writer"):
        for container in stack.containers(service):
            assert stack.get_inside(container, "/readyz")[1]["model"]["name"] == SHIPPED
