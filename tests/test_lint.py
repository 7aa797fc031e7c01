"""Lint as CI runs it: ruff's checks and its formatter over the whole repository (pyproject.toml's [tool.ruff])."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    "argv", [["check", "--no-cache"], ["format", "--check", "--no-cache"]], ids=["check", "format"]
)
def test_ruff(argv: list[str]) -> None:
    done = subprocess.run([sys.executable, "-m", "ruff", *argv, "."], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, f"ruff {' '.join(argv)} found problems:\n{done.stdout[-4000:]}{done.stderr[-2000:]}"
