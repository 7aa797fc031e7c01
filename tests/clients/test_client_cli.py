"""The alexnet-client command line against the fake service on loopback."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from alexnet_client.cli import format_table, main


@pytest.fixture
def images(tmp_path: Path, make_image: Callable[..., bytes]) -> list[str]:
    paths = []
    for name, color in (("red.jpg", (250, 0, 0)), ("dark.png", (10, 10, 10))):
        path = tmp_path / name
        path.write_bytes(make_image((32, 24), color, "PNG" if name.endswith("png") else "JPEG"))
        paths.append(str(path))
    return paths


def run(capsys: pytest.CaptureFixture[str], url: str, *args: str) -> tuple[int, str, str]:
    code = main(["--url", url, "--max-retries", "0", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_classify_table(capsys: pytest.CaptureFixture[str], fake_service: Any, images: list[str]) -> None:
    code, out, err = run(capsys, fake_service.url, "classify", *images, "--top-k", "2", "--tta", "center")
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0].split() == ["image", "size", "rank", "label", "probability"]
    assert lines[1].split() == ["red.jpg", "32x24", "1", "face", "0.6000"]
    assert lines[2].split() == ["2", "airplane", "0.1000"]
    assert lines[3].split()[:3] == ["dark.png", "32x24", "1"]
    assert lines[-1] == "model alexnet-test v1, tta center, 1.5 ms"
    # aligned: every probability ends in the same column
    assert len({len(line) for line in lines[1:5]}) == 1
    assert fake_service.requests[-1].form == {"top_k": ["2"], "tta": ["center"]}


def test_classify_json(capsys: pytest.CaptureFixture[str], fake_service: Any, images: list[str]) -> None:
    code, out, _ = run(capsys, fake_service.url, "classify", images[0], "--json")
    data = json.loads(out)
    assert code == 0 and data["tta"] == "ten_crop"
    assert data["results"][0]["filename"] == "red.jpg" and len(data["results"][0]["predictions"]) == 5


def test_similar_by_image_and_id(capsys: pytest.CaptureFixture[str], fake_service: Any, images: list[str]) -> None:
    code, out, _ = run(capsys, fake_service.url, "similar", images[0], "--k", "2")
    lines = out.splitlines()
    assert code == 0
    assert lines[0] == "query: red.jpg, predicted face 0.6000"
    assert lines[1].split() == ["rank", "id", "label", "distance", "source"]
    assert lines[2].split() == ["1", "1", "cat", "0.0000", "cat.jpg"]
    assert len(lines) == 5 and lines[-1].endswith("feature center, 0.7 ms")

    code, out, _ = run(capsys, fake_service.url, "similar", "--id", "2", "-k", "1", "--feature", "ten_crop", "--json")
    data = json.loads(out)
    assert code == 0 and data["query"]["id"] == 2 and data["feature"] == "ten_crop" and len(data["neighbors"]) == 1


def test_similar_usage_errors(capsys: pytest.CaptureFixture[str], fake_service: Any, images: list[str]) -> None:
    for args in (["similar"], ["similar", images[0], "--id", "1"]):
        with pytest.raises(SystemExit) as excinfo:
            main(["--url", fake_service.url, *args])
        assert excinfo.value.code == 2
        assert "either IMAGE or --id" in capsys.readouterr().err


def test_add_and_remove(capsys: pytest.CaptureFixture[str], fake_service: Any, images: list[str]) -> None:
    key = ["--api-key", fake_service.api_key]
    code, out, _ = run(capsys, fake_service.url, *key, "add", *images, "--label", "bird", "--label", "fish")
    assert code == 0
    assert [line.split() for line in out.splitlines()] == [["id", "label"], ["4", "bird"], ["5", "fish"]]

    code, out, _ = run(capsys, fake_service.url, *key, "remove", "4")
    assert (code, out) == (0, "deleted 4\n")

    code, out, err = run(capsys, fake_service.url, *key, "remove", "4")
    assert (code, out) == (1, "")
    assert err == "alexnet-client: error: no gallery item 4 (HTTP 404 not_found)\n"


def test_add_without_key_fails_with_the_servers_message(
    capsys: pytest.CaptureFixture[str], fake_service: Any, images: list[str]
) -> None:
    code, _, err = run(capsys, fake_service.url, "add", images[0], "--label", "x")
    assert code == 1 and "this endpoint needs an X-API-Key header (HTTP 401 missing_api_key)" in err


def test_client_side_errors_exit_1(capsys: pytest.CaptureFixture[str], fake_service: Any, tmp_path: Path) -> None:
    code, _, err = run(capsys, fake_service.url, "classify", str(tmp_path / "missing.jpg"))
    assert code == 1 and "No such file or directory" in err

    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff garbage")
    code, _, err = run(capsys, fake_service.url, "classify", str(corrupt))
    assert code == 1 and "cannot decode corrupt.jpg" in err and "(HTTP 400 invalid_image)" in err

    code, _, err = run(capsys, fake_service.url, "similar", "--id", "1", "--k", "0")
    assert code == 1 and "k must be between 1 and 50 (HTTP 422 invalid_parameter)" in err


def test_health_and_info(capsys: pytest.CaptureFixture[str], fake_service: Any) -> None:
    code, out, _ = run(capsys, fake_service.url, "health")
    assert code == 0 and [line.split() for line in out.splitlines()] == [
        ["check", "status"],
        ["health", "ok"],
        ["ready", "ready"],
    ]

    fake_service.ready = False
    code, out, _ = run(capsys, fake_service.url, "health", "--json")
    assert code == 1 and json.loads(out)["ready"] == {"ready": False, "status": "loading", "details": {}}

    code, out, _ = run(capsys, fake_service.url, "info")
    table = dict(re.split(r"\s{2,}", line) for line in out.splitlines())
    assert code == 0 and table.pop("field") == "value"
    assert table == {
        "model": "alexnet-test",
        "version": "v1",
        "variant": "paper-grouped",
        "classes": "5",
        "feature dim": "4096",
        "provider": "CPUExecutionProvider",
        "gallery size": "3",
        "created": "2024-01-01T00:00:00+00:00",
        "test accuracy": "not measured (published without a test evaluation)",  # the manifest has no "test"
        "metric top1_ten_crop": "0.75",  # nested metrics (per class) are left to --json
    }

    code, out, _ = run(capsys, fake_service.url, "info", "--json")
    assert code == 0 and json.loads(out)["labels"] == list(fake_service.labels)


def test_connection_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "http://127.0.0.1:9", "health")
    assert code == 1 and err.startswith("alexnet-client: error: could not reach http://127.0.0.1:9")


def test_format_table_alignment() -> None:
    table = format_table(["a", "number"], [["long text", 1], ["x", 12345]], right=(1,))
    assert table.splitlines() == ["a          number", "long text       1", "x           12345"]


def installed_script(name: str) -> str | None:
    """The console script ``name`` installed beside the running interpreter (a virtualenv's bin/,
    whether or not it is on PATH), else the one on PATH."""
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.is_file() else shutil.which(name)


def test_installed_console_script(fake_service: Any) -> None:
    """The entry point from clients/pyproject.toml, and ``python -m alexnet_client``."""
    script = installed_script("alexnet-client")
    if script is None:
        pytest.fail(
            f"no alexnet-client beside {sys.executable} or on PATH: the SDK is not installed; "
            "bash scripts/setup.sh installs it (with the service) into .venv"
        )
    done = subprocess.run(
        [script, "--url", fake_service.url, "health"], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0 and "ready" in done.stdout
    done = subprocess.run(
        [sys.executable, "-m", "alexnet_client", "--version"], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0 and done.stdout.startswith("alexnet-client 0.")
