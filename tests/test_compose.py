"""docker-compose.yml, docker/Dockerfile* and docker/nginx.conf: valid against the Compose
Specification, built and run the way the project intends (replicas behind nginx, one writer, the
optional Milvus stack), and every command they start refers to an entry point that exists. nginx runs
the real config in front of stub replicas here; tests/compose builds and runs the whole stack on a real
engine (scripts/compose_stack.sh). Nothing here skips for a missing tool: `.ci/run` installs nginx.

tests/data/compose-spec.json is the Compose Specification's JSON schema (repository
compose-spec/compose-spec, file schema/compose-spec.json; Apache License 2.0, copyright The
Compose Specification Authors), copied unchanged from the copy that the check-jsonschema 0.39.0
wheel on PyPI vendors (check_jsonschema/builtin_schemas/vendor/compose-spec.json). Its sha256 is
checked below so that it is not edited by accident.
"""

from __future__ import annotations

import hashlib
import json
import re
import shlex
import shutil
import socket
import subprocess
import threading
import time
import tomllib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = ROOT / "docker-compose.yml"
NGINX_CONF = ROOT / "docker" / "nginx.conf"
SCHEMA_FILE = ROOT / "tests" / "data" / "compose-spec.json"
SCHEMA_SHA256 = "d549057ebc2925f39f62799eab0db7b9e2c18b35b6c00595199116da3ed10e64"
DOCKERFILES = {
    "cpu": ROOT / "docker" / "Dockerfile",
    "gpu": ROOT / "docker" / "Dockerfile.gpu",
    "train": ROOT / "docker" / "Dockerfile.train",
}
DEFAULT_DATASET = "../shared/datasets/caltech101"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())


@pytest.fixture(scope="module")
def validator() -> jsonschema.protocols.Validator:
    schema = json.loads(SCHEMA_FILE.read_text())
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def pyproject(path: Path) -> dict[str, Any]:
    return tomllib.loads(path.read_text())


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` with continuation lines joined and comments dropped."""
    logical, current = [], ""
    for line in dockerfile.read_text().splitlines():
        if line.lstrip().startswith("#") or not line.strip():
            continue
        current += line.rstrip().removesuffix("\\") + " "
        if not line.rstrip().endswith("\\"):
            logical.append(current.strip())
            current = ""
    return [(text.split(None, 1)[0].upper(), text.split(None, 1)[1] if " " in text else "") for text in logical]


def exec_form(arguments: str) -> list[str]:
    """A CMD/ENTRYPOINT's argv: the JSON (exec) form, or the shell form split like sh would."""
    return json.loads(arguments) if arguments.startswith("[") else shlex.split(arguments)


def env_values(dockerfile: Path) -> dict[str, str]:
    values = {}
    for name, arguments in instructions(dockerfile):
        if name == "ENV":
            values.update(pair.split("=", 1) for pair in shlex.split(arguments))
    return values


API_SERVICES = ("api", "api-writer", "api-gpu")


def api_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: service for name, service in compose["services"].items() if name in API_SERVICES}


def our_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The services built from this repository's Dockerfiles (not nginx, Milvus, etcd, MinIO)."""
    return {name: service for name, service in compose["services"].items() if "build" in service}


def default_of(value: str) -> str:
    """What ``${VAR:-default}`` interpolates to when VAR is unset."""
    match = re.fullmatch(r"\$\{(\w+):-([^}]*)\}", value)
    assert match, f"{value!r} is not ${{VAR:-default}}"
    return match.group(2)


# -- the Compose file ------------------------------------------------------------------------------


def test_schema_file_is_the_vendored_one() -> None:
    assert hashlib.sha256(SCHEMA_FILE.read_bytes()).hexdigest() == SCHEMA_SHA256


def test_compose_file_matches_the_compose_specification(
    compose: dict[str, Any], validator: jsonschema.protocols.Validator
) -> None:
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(compose)]
    assert errors == []


def test_the_schema_does_reject_mistakes(compose: dict[str, Any], validator: jsonschema.protocols.Validator) -> None:
    broken = json.loads(json.dumps(compose))
    broken["services"]["api"]["healthcheck"]["intervall"] = "5s"
    broken["services"]["train"]["profiles"] = "train"
    messages = " | ".join(error.message for error in validator.iter_errors(broken))
    assert "'intervall' does not match" in messages and "'train' is not of type 'array'" in messages


def test_api_service(compose: dict[str, Any]) -> None:
    services = compose["services"]
    api, writer = services["api"], services["api-writer"]
    for service in (api, writer):
        assert service["build"] == {"context": ".", "dockerfile": "docker/Dockerfile"}
        assert service["image"] == "alexnet-api:latest"
        assert "profiles" not in service  # the default: `docker compose up` starts them
        assert service["command"] == ["python", "-m", "service"]
        assert service["environment"]["ALEXNET_STORE_ROOT"] == "/store"
        assert {"ALEXNET_MODEL_NAME", "ALEXNET_API_KEY"} <= set(service["environment"])
        assert service["environment"]["ALEXNET_PORT"] == "8000" and "ports" not in service  # lb is published
        test = service["healthcheck"]["test"]
        assert test[0] == "CMD" and "http://127.0.0.1:8000/readyz" in test[-1]
    # one writer: it alone holds the key and writes the gallery; the replicas read the store only
    assert writer["environment"]["ALEXNET_API_KEY"] == "${ALEXNET_API_KEY:-}" and "replicas" not in writer["deploy"]
    assert api["environment"]["ALEXNET_API_KEY"] == ""
    assert writer["volumes"] == ["store:/store"] and api["volumes"] == ["store:/store:ro"]
    assert "store" in compose["volumes"]
    assert api["depends_on"]["api-writer"]["condition"] == "service_healthy"


def test_replicas_are_configurable(compose: dict[str, Any]) -> None:
    replicas = compose["services"]["api"]["deploy"]["replicas"]
    assert replicas.startswith("${ALEXNET_API_REPLICAS:-") and int(default_of(replicas)) >= 2


def test_the_load_balancer(compose: dict[str, Any]) -> None:
    lb = compose["services"]["lb"]
    assert re.fullmatch(r"nginx:1\.(2[89]|[3-9]\d)(\.\d+)?-alpine", lb["image"]), "nginx >= 1.27.3 for `resolve`"
    assert lb["ports"] == ["${ALEXNET_BIND_ADDRESS:-127.0.0.1}:${ALEXNET_PORT:-8000}:80"]  # loopback by default
    (conf,) = lb["volumes"]
    source, target, mode = conf.split(":")
    assert (ROOT / source).resolve() == NGINX_CONF and target == "/etc/nginx/conf.d/default.conf" and mode == "ro"
    assert {name: dep["condition"] for name, dep in lb["depends_on"].items()} == {
        "api": "service_healthy",
        "api-writer": "service_healthy",
        "api-gpu": "service_healthy",
    }
    assert "http://127.0.0.1/readyz" in lb["healthcheck"]["test"]  # through nginx to a replica


# -- docker/nginx.conf -----------------------------------------------------------------------------


def nginx_blocks(text: str) -> dict[str, str]:
    """``{"upstream api": body, "location = /index": body, ...}`` of a config without nested
    braces below ``server`` (as ours is)."""
    text = re.sub(r"#[^\n]*", "", text)
    return {" ".join(m.group(1).split()): m.group(2) for m in re.finditer(r"([\w@^=~/ .-]+?)\s*\{([^{}]*)\}", text)}


def test_nginx_routes_to_the_compose_services(compose: dict[str, Any]) -> None:
    blocks = nginx_blocks(NGINX_CONF.read_text())
    servers = {
        name.split()[1]: re.findall(r"^\s*server\s+(\S+)", body, re.MULTILINE)
        for name, body in blocks.items()
        if name.startswith("upstream ")
    }
    assert servers == {"api": ["api:8000"], "api_writer": ["api-writer:8000"]}
    for upstream, (server,) in servers.items():
        host, port = server.split(":")
        assert host in compose["services"] and port == compose["services"][host]["environment"]["ALEXNET_PORT"]
        assert f"zone {upstream} " in blocks[f"upstream {upstream}"] and " resolve" in blocks[f"upstream {upstream}"]
    assert "proxy_pass http://api;" in blocks["location /"]
    for writes in ("location = /index", "location ^~ /index/", "location ^~ /admin/"):
        assert "proxy_pass http://api_writer;" in blocks[writes] and "proxy_next_upstream off;" in blocks[writes]


def test_nginx_body_limit_is_the_services() -> None:
    from service.settings import Settings as settings

    limit = settings.model_fields["max_request_bytes"].default
    text = NGINX_CONF.read_text()
    (size,) = re.findall(r"client_max_body_size\s+(\d+)m;", text)
    assert int(size) * 1024 * 1024 == limit
    assert f"exceeds the limit of {limit} bytes" in text


def nginx_binary() -> str:
    found = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")
    if not found:
        pytest.fail("no nginx binary to run docker/nginx.conf with: apt-get install nginx-light (.ci/run does)")
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def stub_replica(name: str, flaky: bool = False) -> ThreadingHTTPServer:
    """An HTTP server that answers every request with its name, method and path (503 on /flaky
    when ``flaky``: a replica that is overloaded)."""

    class Handler(BaseHTTPRequestHandler):
        def answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            self.rfile.read(length)
            status = 503 if flaky and self.path == "/flaky" else 200
            body = json.dumps(
                {"replica": name, "method": self.command, "path": self.path, "request_id": self.headers["X-Request-ID"]}
            ).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_DELETE = answer

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_nginx_config_balances_and_routes_writes(tmp_path: Path) -> None:
    """The real docker/nginx.conf, with its upstream hosts pointed at stub replicas on loopback
    (Docker's DNS is not here; `resolve` needs a host name, so it goes with them)."""
    nginx = nginx_binary()
    replicas = [stub_replica("api-1", flaky=True), stub_replica("api-2"), stub_replica("writer")]
    ports = [server.server_address[1] for server in replicas]
    port = free_port()
    site = NGINX_CONF.read_text()
    site = site.replace("server api:8000 resolve", f"server 127.0.0.1:{ports[0]}; server 127.0.0.1:{ports[1]}")
    site = site.replace("server api-writer:8000 resolve", f"server 127.0.0.1:{ports[2]}")
    site = site.replace("listen 80;", f"listen 127.0.0.1:{port};")
    assert site.count("127.0.0.1:") == 4
    (tmp_path / "site.conf").write_text(site)
    temp = "".join(
        f"{kind}_temp_path {tmp_path}/{kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    (tmp_path / "nginx.conf").write_text(
        f"pid {tmp_path}/nginx.pid; error_log {tmp_path}/error.log; events {{}}\n"
        f"http {{ access_log off; {temp} include {tmp_path}/site.conf; }}\n"
    )
    argv = [nginx, "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")]
    checked = subprocess.run([*argv, "-t"], capture_output=True, text=True, timeout=30)
    assert checked.returncode == 0, checked.stderr
    process = subprocess.Popen([*argv, "-g", "daemon off;"], stderr=subprocess.PIPE)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            for _ in range(100):
                try:
                    http.get("/readyz")
                    break
                except httpx.TransportError:
                    time.sleep(0.05)
            # the caller's request id goes through; without one, nginx makes one
            assert http.get("/readyz", headers={"X-Request-ID": "mine-1"}).json()["request_id"] == "mine-1"
            assert re.fullmatch(r"[0-9a-f]{32}", http.get("/readyz").json()["request_id"])
            seen = [http.get("/readyz").json()["replica"] for _ in range(6)]
            assert set(seen) == {"api-1", "api-2"}  # round-robin over the replicas
            assert {http.post("/similar", data={"k": "3"}).json()["replica"] for _ in range(4)} == {"api-1", "api-2"}
            for method, path in [("POST", "/index"), ("DELETE", "/index/7"), ("POST", "/admin/reload")]:
                answer = http.request(method, path, headers={"X-Request-ID": "w"}).json()
                assert answer == {"replica": "writer", "method": method, "path": path, "request_id": "w"}
            # a replica's 503 (overloaded, starting) is retried on the other, POSTs included
            assert all(http.post("/flaky").json()["replica"] == "api-2" for _ in range(4))
            too_large = http.post("/classify", content=b"x" * (32 * 1024 * 1024 + 1), headers={"X-Request-ID": "big"})
            assert too_large.status_code == 413 and too_large.json()["error"]["code"] == "payload_too_large"
            assert too_large.headers["X-Request-ID"] == "big"
            replicas[0].shutdown()
            replicas[0].server_close()  # a replica goes away: the other answers everything
            assert {http.get("/readyz").json()["replica"] for _ in range(4)} == {"api-2"}
            replicas[2].shutdown()
            replicas[2].server_close()
            gone = http.post("/index")
            assert gone.status_code == 503 and gone.headers["Retry-After"] == "1"
            assert re.fullmatch(r"[0-9a-f]{32}", gone.headers["X-Request-ID"])
            assert gone.json()["error"]["code"] == "not_ready"
    finally:
        process.terminate()
        process.wait(10)
        for server in replicas[1:]:
            server.shutdown()
            server.server_close()


def test_milvus_profile(compose: dict[str, Any]) -> None:
    services = compose["services"]
    stack = {name for name, service in services.items() if service.get("profiles") == ["milvus"]}
    assert stack == {"milvus", "milvus-etcd", "milvus-minio"}
    for name in stack:
        image = services[name]["image"]
        assert ":" in image and not image.endswith(":latest"), f"{name}: pin the image"
        assert "healthcheck" in services[name] and "ports" not in services[name]  # the compose network only
        for volume in services[name]["volumes"]:
            assert volume.split(":")[0] in compose["volumes"]
    milvus = services["milvus"]
    assert milvus["command"] == ["milvus", "run", "standalone"]
    assert milvus["environment"]["ETCD_ENDPOINTS"] == "milvus-etcd:2379"
    assert milvus["environment"]["MINIO_ADDRESS"] == "milvus-minio:9000"
    assert set(milvus["depends_on"]) == {"milvus-etcd", "milvus-minio"}
    assert "-listen-client-urls=http://0.0.0.0:2379" in services["milvus-etcd"]["command"]
    assert "/minio_data" in services["milvus-minio"]["command"]
    assert "9091/healthz" in milvus["healthcheck"]["test"][-1]
    # the API uses it when ALEXNET_VECTOR_BACKEND=milvus, and starts without it otherwise
    for name in ("api", "api-writer"):
        environment = services[name]["environment"]
        assert default_of(environment["ALEXNET_VECTOR_BACKEND"]) == "faiss"
        assert default_of(environment["ALEXNET_MILVUS_URI"]) == "http://milvus:19530"
    assert services["api-writer"]["depends_on"]["milvus"] == {"condition": "service_healthy", "required": False}
    assert "ALEXNET_VECTOR_BACKEND=milvus" in COMPOSE_FILE.read_text()  # how to turn it on, said in the file


def test_milvus_extra_in_the_api_image() -> None:
    """The milvus profile needs pymilvus in the API image."""
    extras = pyproject(ROOT / "pyproject.toml")["project"]["optional-dependencies"]
    assert any(req.startswith("pymilvus") for req in extras["milvus"])
    runs = " ".join(arguments for name, arguments in instructions(DOCKERFILES["cpu"]) if name == "RUN")
    assert "milvus" in re.findall(r'"\.\[([a-z,]+)\]"', runs)[0].split(","), (
        "docker/Dockerfile: install .[serve,milvus]"
    )


def test_gpu_service(compose: dict[str, Any]) -> None:
    services = compose["services"]
    gpu, api = services["api-gpu"], services["api"]
    assert gpu["profiles"] == ["gpu"]
    assert gpu["build"]["dockerfile"] == "docker/Dockerfile.gpu"
    assert gpu["command"] == api["command"]
    # read replicas like api: nginx's upstream `api` finds them by the alias; the writer stays api-writer
    assert gpu["volumes"] == api["volumes"] == ["store:/store:ro"] and "ports" not in gpu
    assert gpu["environment"]["ALEXNET_API_KEY"] == "" and gpu["environment"]["ALEXNET_PROVIDERS"] == "cuda"
    assert "api" in gpu["networks"]["default"]["aliases"]
    replicas = gpu["deploy"]["replicas"]
    assert replicas.startswith("${ALEXNET_GPU_REPLICAS:-") and int(default_of(replicas)) >= 2
    (device,) = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and device["capabilities"] == ["gpu"] and device["count"] == 1
    assert gpu["depends_on"]["api-writer"]["condition"] == "service_healthy"
    # lb waits for whichever read replicas run: the CPU ones may be scaled to 0, the GPU ones absent
    lb_needs = services["lb"]["depends_on"]
    assert lb_needs["api-gpu"] == {"condition": "service_healthy", "required": False}
    assert lb_needs["api"] == {"condition": "service_healthy", "required": False}


def test_train_service(compose: dict[str, Any]) -> None:
    train = compose["services"]["train"]
    assert train["profiles"] == ["train"] and train["restart"] == "no"
    assert train["build"]["dockerfile"] == "docker/Dockerfile.train"
    assert "store:/store" in train["volumes"]
    (dataset,) = [v for v in train["volumes"] if isinstance(v, dict)]
    assert dataset["type"] == "bind" and dataset["read_only"] is True
    assert dataset["source"] == "${ALEXNET_DATASET_DIR:-" + DEFAULT_DATASET + "}"
    assert dataset["target"] == train["environment"]["ALEXNET_DATA"]


def test_default_dataset_is_the_shared_one() -> None:
    dataset = (COMPOSE_FILE.parent / DEFAULT_DATASET).resolve()
    if not dataset.parent.is_dir():
        pytest.skip(f"no shared datasets folder at {dataset.parent}")
    assert (dataset / "images").is_dir() and (dataset / "splits").is_dir()


def test_compose_env_names_are_service_settings(compose: dict[str, Any]) -> None:
    from service.settings import Settings as settings

    prefix = settings.model_config["env_prefix"]
    assert set(api_services(compose)) == set(API_SERVICES)
    for name, service in api_services(compose).items():
        for variable, value in service["environment"].items():
            assert variable.startswith(prefix), (name, variable)
            assert variable.removeprefix(prefix).lower() in settings.model_fields, (name, variable)
            if value.startswith("${"):  # the defaults must pass the settings' validators
                settings(**{variable.removeprefix(prefix).lower(): default_of(value) or None})
    for kind in ("cpu", "gpu"):
        for variable in env_values(DOCKERFILES[kind]):
            if variable.startswith(prefix):
                assert variable.removeprefix(prefix).lower() in settings.model_fields, (kind, variable)


def test_training_env_names_are_read_by_training(compose: dict[str, Any]) -> None:
    sources = "".join(path.read_text() for path in (ROOT / "training").glob("*.py"))
    variables = set(compose["services"]["train"]["environment"]) | set(env_values(DOCKERFILES["train"]))
    for variable in variables:
        if variable.startswith("ALEXNET_"):
            assert f'"{variable}"' in sources, f"training/ does not read {variable}"


# -- the Dockerfiles -------------------------------------------------------------------------------


def test_compose_builds_the_dockerfiles(compose: dict[str, Any]) -> None:
    built = {
        (ROOT / s["build"]["context"] / s["build"]["dockerfile"]).resolve() for s in our_services(compose).values()
    }
    assert built == {path.resolve() for path in DOCKERFILES.values()}


@pytest.mark.parametrize("kind", DOCKERFILES)
def test_dockerfile_basics(kind: str) -> None:
    steps = instructions(DOCKERFILES[kind])
    users = [arguments for name, arguments in steps if name == "USER"]
    assert users and users[-1] not in ("root", "0"), "the container must not run as root"
    for name, arguments in steps:
        if name == "COPY":
            *sources, _ = shlex.split(arguments)
            for source in sources:
                if not any(ch in source for ch in "*?["):
                    assert (ROOT / source).exists(), f"COPY {source}: no such path in the build context"
    extras = set(pyproject(ROOT / "pyproject.toml")["project"]["optional-dependencies"])
    for name, arguments in steps:
        if name == "RUN":
            for requested in re.findall(r'"\.\[([a-z,]+)\]"', arguments):
                assert set(requested.split(",")) <= extras, f"unknown extra in {requested!r}"


def test_api_images_carry_no_torch() -> None:
    for kind in ("cpu", "gpu"):
        runs = " ".join(arguments for name, arguments in instructions(DOCKERFILES[kind]) if name == "RUN")
        extras = re.findall(r'"\.\[([a-z,]+)\]"', runs)
        assert extras and "serve" in extras[0].split(",")  # serve, perhaps with milvus
        assert "torch" not in runs and "train" not in runs


def test_base_images() -> None:
    def base(kind: str) -> str:
        steps = instructions(DOCKERFILES[kind])
        args = dict(arguments.split("=", 1) for name, arguments in steps if name == "ARG" and "=" in arguments)
        image = next(arguments for name, arguments in steps if name == "FROM").split()[0]
        return re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], image)

    assert base("cpu") == base("train") == "python:3.11-slim"
    # onnxruntime-gpu 1.31+ is built for CUDA 13 (faiss-gpu-cu12 carries its own CUDA 12 libraries)
    assert re.fullmatch(r"nvidia/cuda:13\.[\d.]+-cudnn-runtime-ubuntu[\d.]+", base("gpu"))


def test_gpu_image_swaps_the_cpu_pair() -> None:
    (install,) = [
        arguments for name, arguments in instructions(DOCKERFILES["gpu"]) if name == "RUN" and "[gpu]" in arguments
    ]
    gpu_extra = pyproject(ROOT / "pyproject.toml")["project"]["optional-dependencies"]["gpu"]
    assert {re.split(r"[<>=]", req)[0] for req in gpu_extra} == {"onnxruntime-gpu", "faiss-gpu-cu12"}
    uninstall, _, after = install.partition("pip uninstall --yes alexnet-service onnxruntime faiss-cpu")
    assert '".[serve]"' in uninstall and '".[gpu]"' in after, "the CPU pair must go before the GPU pair is installed"


# -- entry points ----------------------------------------------------------------------------------


def commands(compose: dict[str, Any]) -> list[tuple[str, list[str]]]:
    """Every argv a container starts with: Dockerfile CMD/ENTRYPOINT (not HEALTHCHECK's) and the
    Compose services' command/entrypoint."""
    found = []
    for path in DOCKERFILES.values():
        found += [(f"{path.name} {n}", exec_form(a)) for n, a in instructions(path) if n in ("CMD", "ENTRYPOINT")]
    for name, service in our_services(compose).items():
        for key in ("command", "entrypoint"):
            if key in service:
                value = service[key]
                found.append((f"compose {name}.{key}", value if isinstance(value, list) else shlex.split(value)))
    return found


def console_scripts() -> dict[str, str]:
    scripts = {}
    for path in (ROOT / "pyproject.toml", ROOT / "clients" / "pyproject.toml"):
        scripts.update(pyproject(path)["project"].get("scripts", {}))
    return scripts


def check_module(module: str) -> str | None:
    """``python -m module`` runs: a package with __main__.py, or a module file. Returns what is
    not written yet, if anything."""
    path = ROOT / module.replace(".", "/")
    if not path.is_dir() and not path.with_suffix(".py").is_file():
        return f"module {module}"
    assert (path / "__main__.py").is_file() or path.with_suffix(".py").is_file(), f"python -m {module}: no __main__"
    return None


def check_script(script: str, arguments: list[str]) -> str | None:
    """A console script: its ``module:function`` exists, and its subcommand and options appear in
    the script's package. Returns what is not written yet, if anything."""
    target = console_scripts().get(script)
    assert target, f"{script} is not a console script of pyproject.toml or clients/pyproject.toml"
    module, function = target.split(":")
    module_file = module.replace(".", "/") + ".py"
    base = next((p for p in (ROOT, ROOT / "clients") if (p / module_file).is_file()), None)
    if base is None:
        return f"{module_file} ({script})"
    source = (base / module_file).read_text()
    assert re.search(rf"^def {function}\(", source, re.MULTILINE), f"{target}: no function {function}"
    package = "".join(p.read_text() for p in (base / module.split(".")[0]).rglob("*.py"))
    for word in arguments:
        if re.fullmatch(r"--?[a-z][a-z0-9-]*|[a-z][a-z0-9-]*", word):
            assert f'"{word}"' in package, f"{script}: {word!r} is not defined in {module.split('.')[0]}/"
    return None


def test_commands_refer_to_real_entry_points(compose: dict[str, Any]) -> None:
    seen = commands(compose)
    assert {where for where, _ in seen} >= {"Dockerfile CMD", "Dockerfile.gpu CMD", "Dockerfile.train CMD"}
    missing = set()
    for _, argv in seen:
        missing.add(check_module(argv[2]) if argv[:2] == ["python", "-m"] else check_script(argv[0], argv[1:]))
    missing.discard(None)
    assert not missing, f"commands name entry points that do not exist: {', '.join(sorted(missing))}"  # type: ignore[arg-type]


def test_client_console_script() -> None:
    assert check_script("alexnet-client", ["classify", "similar", "add", "remove", "health", "info", "--json"]) is None
