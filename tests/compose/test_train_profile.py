"""The `train` profile for real: its image builds (scripts/compose_stack.sh build-train), its entry point
runs, and a tiny training inside the container publishes a new version into the stack's store volume,
which api-writer then serves after POST /admin/reload.

Runs after test_stack.py, on the same stack (stack_helpers.py).
"""

from __future__ import annotations

import httpx
from stack_helpers import API_KEY, Stack

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
