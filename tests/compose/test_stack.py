"""docker-compose.yml end to end: the real images on a real engine, lb (nginx) published on 127.0.0.1,
two api replicas and api-writer serving the tiny model from the store volume (stack_helpers.py).

The tests run in file order and share the stack: the gallery tests leave their changes behind for the
restart tests that follow, and a later test takes the stack down and up again. Then the `train` profile:
its image builds (scripts/compose_stack.sh build-train) and its entry point runs; a tiny training inside
the container publishes a new version into the stack's store volume, which api-writer serves after
POST /admin/reload; and the one-shot's default command installs the shipped model, which the stack serves
once started with that model's name (the last test: it changes what the stack serves).
"""

from __future__ import annotations

import re
import threading
import time
from typing import Any

import httpx
import pytest
import yaml
from alexnet_client import AuthenticationError, NotFoundError
from image_helpers import CALTECH_SAMPLES
from stack_helpers import API_KEY, REPO_ROOT, SCRIPT, Stack, run, wait_for
from training_helpers import TEST_WIDTH

COMPOSE = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())
REPLICAS = 2  # ALEXNET_API_REPLICAS' default
FACE, ACCORDION, LEOPARD = CALTECH_SAMPLES
ADDED: dict[str, int] = {}  # the gallery change made below, checked after each restart


def memory_bytes(text: str) -> int:
    number, unit = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([kmg]?)i?b?", text.strip().lower()).groups()  # type: ignore[union-attr]
    return int(float(number) * 1024 ** " kmg".index(unit or " "))


def ready_everywhere(stack: Stack) -> dict[str, dict[str, Any]]:
    """/readyz of every api replica and of the writer, asked on each container's own loopback."""
    answers = {}
    for service in ("api", "api-writer"):
        for container in stack.containers(service):
            status, body = stack.get_inside(container, "/readyz")
            assert status == 200, (stack.name(container), status, body)
            answers[stack.name(container)] = body
    return answers


def thumbnail_status(stack: Stack, container: str, item_id: int) -> int:
    return stack.get_inside(container, f"/gallery/{item_id}/thumbnail")[0]


def test_every_container_is_healthy_and_each_replica_ready(stack: Stack, http: httpx.Client) -> None:
    states = {}
    for service in ("lb", "api", "api-writer"):
        for container in stack.containers(service):
            states[stack.name(container)] = stack.inspect(container)["State"]["Health"]["Status"]
    assert sorted(states) == sorted(
        ["alexnet-e2e-lb-1", "alexnet-e2e-api-writer-1"] + [f"alexnet-e2e-api-{i}" for i in range(1, REPLICAS + 1)]
    )
    assert set(states.values()) == {"healthy"}, states
    answers = ready_everywhere(stack)
    for body in answers.values():
        assert body["status"] == "ready" and body["model"]["name"] == stack.model.name
        assert body["provider"] == "CPUExecutionProvider" and body["gallery_size"] > 0
    assert len({body["gallery_size"] for body in answers.values()}) == 1  # one gallery, loaded by each
    through_lb = http.get("/readyz")
    assert through_lb.status_code == 200 and through_lb.json()["model"]["name"] == stack.model.name
    assert re.fullmatch(r"[0-9a-f]{32}", through_lb.headers["X-Request-ID"])  # nginx made one, the replica echoed it


def test_classify_through_nginx_on_every_replica(stack: Stack) -> None:
    with stack.client() as client:
        for path in (FACE, ACCORDION, LEOPARD):
            answer = client.classify(path, top_k=3)
            (result,) = answer.results
            assert answer.model.name == stack.model.name and result.filename == path.name
            assert {p.label for p in result.predictions} <= set(stack.model.classes)
            assert len(result.predictions) == 3 and 0 < sum(p.probability for p in result.predictions) <= 1 + 1e-5
        several = client.classify([FACE, ACCORDION, LEOPARD, FACE], tta="center")
        assert [r.filename for r in several.results] == [FACE.name, ACCORDION.name, LEOPARD.name, FACE.name]
        assert several.results[0].predictions == several.results[3].predictions  # same image, same answer
        for _ in range(6):
            client.classify(ACCORDION, tta="center")
    # round-robin: every replica answered some of them (their access logs), the writer none
    for container in stack.containers("api"):
        log = run(["docker", "logs", container]).stdout + run(["docker", "logs", container]).stderr
        assert log.count("POST /classify") >= 2, stack.name(container)
    (writer,) = stack.containers("api-writer")
    writer_log = run(["docker", "logs", writer]).stdout + run(["docker", "logs", writer]).stderr
    assert "POST /classify" not in writer_log


def test_similar_by_upload_and_by_id(stack: Stack) -> None:
    with stack.client() as client:
        by_upload = client.similar(LEOPARD, k=5)
        assert by_upload.query.filename == LEOPARD.name and by_upload.query.id is None
        assert len(by_upload.neighbors) == 5
        distances = [n.distance for n in by_upload.neighbors]
        assert distances == sorted(distances)
        assert {n.label for n in by_upload.neighbors} <= set(stack.model.classes)
        nearest = by_upload.neighbors[0]
        by_id = client.similar(id=nearest.id, k=4)
        assert by_id.query.id == nearest.id and by_id.query.label == nearest.label
        assert nearest.id not in [n.id for n in by_id.neighbors] and len(by_id.neighbors) == 4
        thumbnail = client.thumbnail(nearest.id)
        assert thumbnail[:3] == b"\xff\xd8\xff"  # a JPEG, from whichever replica answered
        with pytest.raises(NotFoundError):
            client.similar(id=10**9)


def test_gallery_changes_need_the_key_and_reach_every_replica(stack: Stack, http: httpx.Client) -> None:
    with stack.client(api_key="") as anonymous, pytest.raises(AuthenticationError):
        anonymous.add_to_index(FACE, "Faces")
    assert http.delete("/index/1").status_code == 401
    assert http.delete("/index/1", headers={"X-API-Key": "wrong-key-0123456789"}).status_code == 403
    # a replica holds no key: a change sent to it directly is refused
    replica = stack.containers("api")[0]
    assert stack.get_inside(replica, "/readyz")[0] == 200
    refused = stack.exec(replica, "python", "-c", (
        "import urllib.request, urllib.error\n"
        "req = urllib.request.Request('http://127.0.0.1:8000/index/1', method='DELETE',"
        f" headers={{'X-API-Key': '{API_KEY}'}})\n"
        "try:\n    urllib.request.urlopen(req, timeout=10); print(200)\n"
        "except urllib.error.HTTPError as e:\n    print(e.code)\n"
    )).stdout.strip()  # fmt: skip
    assert refused == "403"

    before = ready_everywhere(stack)
    (size_before,) = {body["gallery_size"] for body in before.values()}
    with stack.client(api_key=API_KEY) as writer:
        added = writer.add_to_index(LEOPARD, "Leopards-added")
        (item,) = added.added
        assert added.gallery_size == size_before + 1 and item.label == "Leopards-added"
        victim = writer.similar(FACE, k=1).neighbors[0].id  # an item the model was published with
        removed = writer.remove_from_index(victim)
        assert removed.gallery_size == size_before
        with pytest.raises(NotFoundError):
            writer.remove_from_index(victim)  # the writer knows it is gone
    ADDED.update(added=item.id, removed=victim)
    (writer_container,) = stack.containers("api-writer")
    assert thumbnail_status(stack, writer_container, item.id) == 200
    assert thumbnail_status(stack, writer_container, victim) == 404

    # FAISS replicas load the gallery when they start (docs/scaling.md): restart them, then each has the change
    stack.compose("restart", "api", timeout=300)
    stack.up()
    for container in stack.containers("api"):
        assert thumbnail_status(stack, container, item.id) == 200, stack.name(container)
        assert thumbnail_status(stack, container, victim) == 404, stack.name(container)
        assert stack.get_inside(container, "/readyz")[1]["gallery_size"] == size_before
    with stack.client() as client:
        hits = client.similar(LEOPARD, k=3).neighbors
        assert hits[0].id == item.id and hits[0].label == "Leopards-added" and hits[0].distance < 1e-2


def check_gallery_change(stack: Stack) -> None:
    assert ADDED, "test_gallery_changes_need_the_key_and_reach_every_replica did not run first"
    for service in ("api", "api-writer"):
        for container in stack.containers(service):
            assert thumbnail_status(stack, container, ADDED["added"]) == 200, stack.name(container)
            assert thumbnail_status(stack, container, ADDED["removed"]) == 404, stack.name(container)


def test_gallery_survives_a_writer_restart(stack: Stack, http: httpx.Client) -> None:
    (before,) = stack.containers("api-writer")
    started_at = stack.inspect(before)["State"]["StartedAt"]
    stack.compose("restart", "api-writer", timeout=300)
    stack.up()
    (after,) = stack.containers("api-writer")
    assert stack.inspect(after)["State"]["StartedAt"] != started_at
    check_gallery_change(stack)
    # the restarted writer goes on from the ids it handed out: never one again
    with stack.client(api_key=API_KEY) as writer:
        again = writer.add_to_index(ACCORDION, "accordion-added")
        assert again.added[0].id > ADDED["added"]
        writer.remove_from_index(again.added[0].id)


def test_containers_run_as_non_root_with_the_store_read_only_on_replicas(stack: Stack) -> None:
    declared = {name: COMPOSE["services"][name]["volumes"] for name in ("api", "api-writer")}
    assert declared == {"api": ["store:/store:ro"], "api-writer": ["store:/store"]}
    for service, writable in (("api", False), ("api-writer", True)):
        for container in stack.containers(service):
            info = stack.inspect(container)
            assert info["Config"]["User"] == "alexnet"
            assert stack.exec(container, "id", "-u").stdout.strip() == "10001"
            ps = stack.exec(container, "python", "-c", "import os; print(os.stat('/proc/1').st_uid)").stdout.strip()
            assert ps == "10001", "the service process (pid 1) runs as alexnet"
            (mount,) = [m for m in info["Mounts"] if m["Destination"] == "/store"]
            assert mount["Type"] == "volume" and mount["Name"] == "alexnet-e2e_store" and mount["RW"] is writable
            touched = stack.exec(container, "touch", "/store/.probe", check=False)
            if writable:
                assert touched.returncode == 0, touched.stderr
                stack.exec(container, "rm", "/store/.probe")
            else:
                assert touched.returncode != 0 and "Read-only file system" in touched.stderr
    # and root in a replica cannot write it either: the mount itself is read-only
    root_try = stack.exec(stack.containers("api")[0], "touch", "/store/.probe", user="0", check=False)
    assert root_try.returncode != 0 and "Read-only file system" in root_try.stderr


def test_memory_stays_under_the_limits_the_file_sets(stack: Stack) -> None:
    for service in ("api", "api-writer", "lb"):
        limit = memory_bytes(COMPOSE["services"][service]["deploy"]["resources"]["limits"]["memory"])
        for container in stack.containers(service):
            assert stack.inspect(container)["HostConfig"]["Memory"] == limit, "the engine applies the file's limit"
            stats = run(["docker", "stats", "--no-stream", "--format", "{{.MemUsage}}", container]).stdout
            used = memory_bytes(stats.split("/")[0])
            print(f"{stack.name(container)}: {stats.strip()}")
            assert 0 < used < 0.8 * limit, (stack.name(container), stats)
            assert stack.inspect(container)["State"]["OOMKilled"] is False


def test_killing_a_replica_under_load_is_hidden_by_retries(stack: Stack) -> None:
    """A client classifies without pause while one api replica is killed (SIGKILL): nginx passes a
    refused or failed request to the other replica, and the SDK retries what still fails."""
    results: list[str] = []
    stop = threading.Event()

    def client_loop() -> None:
        with stack.client(max_retries=3, timeout=30) as client:
            deadline = time.monotonic() + 120
            while not stop.is_set() and time.monotonic() < deadline:
                try:
                    client.classify(FACE, tta="center")
                    results.append("ok")
                except Exception as error:  # counted, not raised: the point is how many fail
                    results.append(f"{type(error).__name__}: {error}")

    threads = [threading.Thread(target=client_loop) for _ in range(2)]
    for thread in threads:
        thread.start()
    try:
        wait_for(lambda: len(results) >= 10, 60, "10 requests before the kill")
        victim = stack.containers("api")[0]
        run(["docker", "kill", victim])
        at_kill = len(results)
        wait_for(lambda: len(results) >= at_kill + 30, 90, "30 requests after the kill")
    finally:
        stop.set()
        for thread in threads:
            thread.join(60)
    failed = [r for r in results if r != "ok"]
    print(f"replica killed after {at_kill} requests; {len(results)} sent, {len(failed)} failed: {failed[:3]}")
    assert failed == []
    stack.up()  # the killed replica back (restart: unless-stopped, or compose)
    assert len(stack.containers("api")) == REPLICAS
    ready_everywhere(stack)


def test_gallery_survives_down_and_up(stack: Stack) -> None:
    stack.compose("down", timeout=300)  # containers and network go; the store volume stays
    assert stack.compose("ps", "--all", "--quiet").stdout.strip() == ""
    assert "alexnet-e2e_store" in run(["docker", "volume", "ls", "--quiet"]).stdout.split()
    stack.up()
    check_gallery_change(stack)
    with stack.client() as client:
        assert client.similar(LEOPARD, k=1).neighbors[0].id == ADDED["added"]


def test_only_lb_is_published_on_loopback(stack: Stack) -> None:
    """lb's port is published on 127.0.0.1 (ALEXNET_BIND_ADDRESS' default); the replicas publish none;
    the containers' network is in the daemon's 198.18.0.0/16 pool."""
    for service in ("api", "api-writer"):
        for container in stack.containers(service):
            assert not stack.inspect(container)["NetworkSettings"]["Ports"] or all(
                v is None for v in stack.inspect(container)["NetworkSettings"]["Ports"].values()
            )
    (lb,) = stack.containers("lb")
    bindings = stack.inspect(lb)["NetworkSettings"]["Ports"]["80/tcp"]
    assert [(b["HostIp"], b["HostPort"]) for b in bindings] == [("127.0.0.1", stack.url.rsplit(":", 1)[1])]
    for network in stack.inspect(lb)["NetworkSettings"]["Networks"].values():
        assert network["IPAddress"].startswith("198.18."), network["IPAddress"]  # the pool, not 172.17


# --- the train profile -------------------------------------------------------------------------------

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
        f" --width {TEST_WIDTH} --init kaiming --input-scale 0.015625 --warmup-epochs 0.5 --no-publish"
        " --out /runs/tiny --cache /runs/cache"
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
