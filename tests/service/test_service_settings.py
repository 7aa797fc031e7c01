"""service/settings.py: environment parsing and the validators that stop a bad start-up."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from pydantic import ValidationError

from service.deps import require_api_key
from service.errors import Forbidden, MissingApiKey
from service.settings import Settings

REPO_ROOT = Path(__file__).resolve().parents[2]
KEY = "k" * 16


def test_reads_alexnet_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALEXNET_STORE_ROOT", "/srv/store")
    monkeypatch.setenv("ALEXNET_MODEL_VERSION", "v3")
    monkeypatch.setenv("ALEXNET_MAX_TOP_K", "7")
    monkeypatch.setenv("ALEXNET_PROVIDERS", "cpu")
    monkeypatch.setenv("ALEXNET_API_KEY", KEY)
    monkeypatch.setenv("ALEXNET_CORS_ORIGINS", "https://a.example, http://localhost:3000")
    settings = Settings()
    assert settings.store_root == Path("/srv/store") and settings.model_version == "v3"
    assert settings.max_top_k == 7 and settings.providers == "cpu"
    assert settings.api_key is not None and settings.api_key.get_secret_value() == KEY
    assert KEY not in repr(settings)
    assert settings.cors_origins == ["https://a.example", "http://localhost:3000"]


def test_defaults() -> None:
    settings = Settings(_env_file=None)
    assert settings.store_root == Path("store") and settings.model_name == "alexnet-caltech101"
    assert settings.model_version == "latest" and settings.providers == "auto"
    assert settings.api_key is None and settings.cors_origins == []


@pytest.mark.parametrize("enabled", [False, True])
def test_fastapi_opentelemetry_is_opt_in(enabled: bool) -> None:
    """Off (the default), FastAPI skips its per-request look-ups of the global OpenTelemetry providers."""
    from service.app import create_app

    app = create_app(Settings(_env_file=None, opentelemetry=enabled))
    config = app._telemetry  # FastAPI(telemetry=...), as FastAPI keeps it
    assert (config["tracing"], config["metrics"], config["logs"]) == (enabled, enabled, enabled)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("batch_max_size", 9, "greater than or equal to 10"),
        ("max_queue", 2, "max_queue must be >= max_files_per_request"),
        ("max_request_bytes", 10, "max_request_bytes must be >= max_upload_bytes"),
        ("api_key", "short", "at least 16"),
        ("model_version", "newest", "latest"),
        ("model_name", "../etc", "letters"),
        ("providers", "tpu", "auto"),
        ("cors_origins", "example.com", "origin"),
        ("batch_max_wait_ms", -1, "greater than or equal to 0"),
        ("max_k", 0, "greater than or equal to 1"),
    ],
)
def test_bad_values_fail_at_start_up(field: str, value: object, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Settings(**{field: value})


def test_empty_api_key_means_none() -> None:
    assert Settings(api_key="").api_key is None


def test_api_key_check() -> None:
    def check(settings: Settings, key: str | None) -> None:
        asyncio.run(require_api_key(settings, key))

    with pytest.raises(Forbidden, match="no api_key"):
        check(Settings(), KEY)
    keyed = Settings(api_key=KEY)
    with pytest.raises(MissingApiKey):
        check(keyed, None)
    with pytest.raises(Forbidden, match="not valid"):
        check(keyed, KEY + "x")
    check(keyed, KEY)


def test_python_m_service_exits_with_a_message_on_bad_settings() -> None:
    env = {"PATH": "/usr/bin:/bin", "ALEXNET_MAX_QUEUE": "0"}
    result = subprocess.run(
        [sys.executable, "-m", "service"], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert "max_queue" in result.stderr and "Traceback" not in result.stderr


def test_python_m_service_rejects_unknown_arguments() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "service", "--prot", "9000"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert "unrecognized arguments: --prot 9000" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("module", ["service", "alexnet_cli serve"])
def test_port_flag_wins_over_the_environment(module: str, start_service, private_store: Path) -> None:
    server = start_service(private_store, module=module, port_flag=True)  # ready on --port; ALEXNET_PORT: another
    assert httpx.get(f"{server.url}/healthz", timeout=5).status_code == 200
    assert f"Uvicorn running on {server.url}" in server.log()


@pytest.mark.parametrize("command", [["-m", "service", "--help"], ["-m", "alexnet_cli", "serve", "--help"]])
def test_help_lists_every_setting_with_its_default(command: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    result = subprocess.run([sys.executable, *command], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    listed = dict(re.findall(r"^  (ALEXNET_\w+) \(default: (.*)\)$", result.stdout, re.MULTILINE))
    assert set(listed) == {f"ALEXNET_{name.upper()}" for name in Settings.model_fields}
    assert listed["ALEXNET_PORT"] == "8000" and listed["ALEXNET_ACCESS_LOG"] == "true"
    assert listed["ALEXNET_API_KEY"] == "unset" and listed["ALEXNET_MAX_UPLOAD_BYTES"] == str(8 * 1024 * 1024)
    for variable in [name for name in os.environ if name.startswith("ALEXNET_")]:
        monkeypatch.delenv(variable)
    for variable, shown in listed.items():
        if shown not in ("unset", "empty"):
            monkeypatch.setenv(variable, shown)
    from_listing = Settings()  # every listed default, read back from the environment
    for variable in listed:
        monkeypatch.delenv(variable, raising=False)
    assert from_listing == Settings(), "the defaults as listed do not read back as the defaults"


def test_service_package_does_not_import_torch() -> None:
    code = "import sys, service.__main__, service.app; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, check=True, timeout=60)
    importing = re.compile(r"^\s*(import|from)\s+torch\b", re.MULTILINE)
    sources = [p for p in (REPO_ROOT / "service").rglob("*.py") if importing.search(p.read_text())]
    assert not sources, sources


def test_the_command_line_parses_without_torch() -> None:
    """``alexnet serve`` and every command's parser load without torch (seconds and hundreds of MB): only a command
    that trains, exports or evaluates imports it."""
    code = (
        "import sys; from alexnet_cli.main import build_parser; from alexnet_cli import serve; build_parser(); "
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, check=True, timeout=60)
