"""The alexnet-client command line against the real service app on the fake model, on loopback
(tests/fake_serving.py)."""

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
from fake_serving import FAKE_LABELS, FAKE_MODEL_NAME, FAKE_PROVIDER, GALLERY, LIVE_SETTINGS, TEST_API_KEY, fake_app


@pytest.fixture
def url(serve: Callable[[Any], str], fake_store: Path) -> str:
    return serve(fake_app(fake_store, **LIVE_SETTINGS))


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


def test_classify_table(capsys: pytest.CaptureFixture[str], url: str, images: list[str]) -> None:
    code, out, err = run(capsys, url, "classify", *images, "--top-k", "2", "--tta", "center")
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0].split() == ["image", "size", "rank", "label", "probability"]
    first, second = lines[1].split(), lines[2].split()
    assert first[:3] == ["red.jpg", "32x24", "1"] and first[3] in FAKE_LABELS
    assert second[0] == "2" and second[1] in FAKE_LABELS and float(second[2]) <= float(first[4])
    assert lines[3].split()[:3] == ["dark.png", "32x24", "1"]
    assert re.fullmatch(rf"model {FAKE_MODEL_NAME} v1, tta center, [\d.]+ ms", lines[-1])
    # aligned: every probability ends in the same column
    assert len({len(line) for line in lines[1:5]}) == 1


def test_classify_json(capsys: pytest.CaptureFixture[str], url: str, images: list[str]) -> None:
    code, out, _ = run(capsys, url, "classify", images[0], "--json")
    data = json.loads(out)
    assert code == 0 and data["tta"] == "ten_crop"
    assert data["results"][0]["filename"] == "red.jpg" and len(data["results"][0]["predictions"]) == 5


def test_similar_by_image_and_id(capsys: pytest.CaptureFixture[str], url: str, tmp_path: Path) -> None:
    query = tmp_path / "query.png"
    query.write_bytes(GALLERY[2].png())
    code, out, _ = run(capsys, url, "similar", str(query), "--k", "2")
    lines = out.splitlines()
    assert code == 0
    assert re.fullmatch(r"query: query.png, predicted \w+ [01]\.\d{4}", lines[0])
    assert lines[1].split() == ["rank", "id", "label", "distance", "source"]
    assert lines[2].split() == ["1", "2", GALLERY[2].label, "0.0000", GALLERY[2].source]
    assert len(lines) == 5 and re.search(r"feature center, [\d.]+ ms$", lines[-1])

    code, out, _ = run(capsys, url, "similar", "--id", "2", "-k", "1", "--feature", "center", "--json")
    data = json.loads(out)
    assert code == 0 and data["query"]["id"] == 2 and data["feature"] == "center" and len(data["neighbors"]) == 1


def test_similar_usage_errors(capsys: pytest.CaptureFixture[str], images: list[str]) -> None:
    for args in (["similar"], ["similar", images[0], "--id", "1"]):
        with pytest.raises(SystemExit) as excinfo:
            main(["--url", "http://127.0.0.1:9", *args])
        assert excinfo.value.code == 2
        assert "either IMAGE or --id" in capsys.readouterr().err


def test_add_and_remove(capsys: pytest.CaptureFixture[str], url: str, images: list[str]) -> None:
    key = ["--api-key", TEST_API_KEY]
    code, out, _ = run(capsys, url, *key, "add", *images, "--label", "bird", "--label", "fish")
    assert code == 0
    assert [line.split() for line in out.splitlines()] == [["id", "label"], ["10", "bird"], ["11", "fish"]]

    code, out, _ = run(capsys, url, *key, "remove", "10", "--json")
    assert code == 0 and json.loads(out) == {"id": 10, "deleted": True, "gallery_size": 11}
    code, out, _ = run(capsys, url, *key, "remove", "11")
    assert (code, out) == (0, "deleted 11\n")

    code, out, err = run(capsys, url, *key, "remove", "11")
    assert (code, out) == (1, "")
    assert re.fullmatch(r"alexnet-client: error: no gallery item has id 11 \(HTTP 404 not_found, request \w+\)\n", err)


def test_add_without_key_fails_with_the_servers_message(
    capsys: pytest.CaptureFixture[str], url: str, images: list[str]
) -> None:
    code, _, err = run(capsys, url, "add", images[0], "--label", "x")
    assert code == 1 and "send the X-API-Key header (HTTP 401 missing_api_key" in err


def test_client_side_errors_exit_1(capsys: pytest.CaptureFixture[str], url: str, tmp_path: Path) -> None:
    code, _, err = run(capsys, url, "classify", str(tmp_path / "missing.jpg"))
    assert code == 1 and "No such file or directory" in err

    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff garbage")
    code, _, err = run(capsys, url, "classify", str(corrupt))
    assert code == 1 and "corrupt.jpg" in err and "(HTTP 400 bad_image" in err

    code, _, err = run(capsys, url, "similar", "--id", "1", "--k", "0")
    assert code == 1 and "k must be between 1 and 10, got 0 (HTTP 422 invalid_parameter" in err


def test_health_and_info(capsys: pytest.CaptureFixture[str], serve: Callable[[Any], str], fake_store: Path) -> None:
    app = fake_app(fake_store, **LIVE_SETTINGS)
    url = serve(app)
    code, out, _ = run(capsys, url, "health")
    assert code == 0 and [line.split() for line in out.splitlines()] == [
        ["check", "status"],
        ["health", "ok"],
        ["ready", "ready"],
    ]

    app.state.engine.ready = False
    code, out, _ = run(capsys, url, "health", "--json")
    ready = json.loads(out)["ready"]
    assert code == 1 and (ready["ready"], ready["status"], ready["details"]) == (False, "not_ready", None)
    app.state.engine.ready = True

    code, out, _ = run(capsys, url, "info")
    table = dict(re.split(r"\s{2,}", line) for line in out.splitlines())
    assert code == 0 and table.pop("field") == "value"
    created = table.pop("created")
    assert table == {
        "model": FAKE_MODEL_NAME,
        "version": "v1",
        "variant": "fake",
        "classes": "5",
        "feature dim": "4096",
        "provider": FAKE_PROVIDER,
        "gallery size": "10",
        "test split": "test30",
        "test accuracy": "not measured (published without a test evaluation)",  # the manifest has no "test"
        "metric steps": "3",  # nested metrics (onnx_parity) are left to --json
    }
    assert created.startswith("20")

    code, out, _ = run(capsys, url, "info", "--json")
    info = json.loads(out)
    assert code == 0 and info["manifest"]["labels"] == list(FAKE_LABELS) and info["provider"] == FAKE_PROVIDER


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


def test_installed_console_script(url: str) -> None:
    """The entry point from clients/pyproject.toml, and ``python -m alexnet_client``."""
    script = installed_script("alexnet-client")
    if script is None:
        pytest.fail(
            f"no alexnet-client beside {sys.executable} or on PATH: the SDK is not installed; "
            "bash scripts/setup.sh installs it (with the service) into .venv"
        )
    done = subprocess.run([script, "--url", url, "health"], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0 and "ready" in done.stdout
    done = subprocess.run(
        [sys.executable, "-m", "alexnet_client", "--version"], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0 and done.stdout.startswith("alexnet-client 0.")
