"""docker-compose.yml and docker/Dockerfile*: valid against the Compose Specification, built and run
the way the project intends, and every command they start refers to an entry point that exists.

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
import tomllib
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = ROOT / "docker-compose.yml"
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


def api_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: service for name, service in compose["services"].items() if name in ("api", "api-gpu")}


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
    api = compose["services"]["api"]
    assert api["build"] == {"context": ".", "dockerfile": "docker/Dockerfile"}
    assert "profiles" not in api  # the default: `docker compose up` starts the CPU API
    assert api["command"] == ["python", "-m", "service"]
    assert api["environment"]["ALEXNET_STORE_ROOT"] == "/store"
    assert {"ALEXNET_MODEL_NAME", "ALEXNET_API_KEY"} <= set(api["environment"])
    assert api["ports"] == ["${ALEXNET_PORT:-8000}:8000"] and api["environment"]["ALEXNET_PORT"] == "8000"
    assert "store:/store" in api["volumes"] and "store" in compose["volumes"]
    test = api["healthcheck"]["test"]
    assert test[0] == "CMD" and "http://127.0.0.1:8000/readyz" in test[-1]


def test_gpu_service(compose: dict[str, Any]) -> None:
    gpu = compose["services"]["api-gpu"]
    assert gpu["profiles"] == ["gpu"]
    assert gpu["build"]["dockerfile"] == "docker/Dockerfile.gpu"
    assert gpu["command"] == compose["services"]["api"]["command"]
    assert gpu["volumes"] == compose["services"]["api"]["volumes"]
    (device,) = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and device["capabilities"] == ["gpu"] and device["count"] == 1


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
    settings = pytest.importorskip("service.settings", reason="service.settings not written yet").Settings
    prefix = settings.model_config["env_prefix"]
    for name, service in api_services(compose).items():
        for variable in service["environment"]:
            assert variable.startswith(prefix), (name, variable)
            assert variable.removeprefix(prefix).lower() in settings.model_fields, (name, variable)
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
    built = {(ROOT / s["build"]["context"] / s["build"]["dockerfile"]).resolve() for s in compose["services"].values()}
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
        assert '".[serve]"' in runs and "torch" not in runs and "train" not in runs


def test_base_images() -> None:
    def base(kind: str) -> str:
        steps = instructions(DOCKERFILES[kind])
        args = dict(arguments.split("=", 1) for name, arguments in steps if name == "ARG" and "=" in arguments)
        image = next(arguments for name, arguments in steps if name == "FROM").split()[0]
        return re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], image)

    assert base("cpu") == base("train") == "python:3.11-slim"
    assert re.fullmatch(r"nvidia/cuda:12\.[\d.]+-cudnn-runtime-ubuntu[\d.]+", base("gpu"))


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
    for name, service in compose["services"].items():
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
    if missing:
        pytest.skip(f"entry points not written yet: {', '.join(sorted(missing))}")  # type: ignore[arg-type]


def test_client_console_script() -> None:
    assert check_script("alexnet-client", ["classify", "similar", "add", "remove", "health", "info", "--json"]) is None
