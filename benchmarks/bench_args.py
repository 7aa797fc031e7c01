"""What the benchmark scripts share: the arguments that name a published model and the dataset,
the command line a report quotes, and writing a report's markdown both to its file and to the
terminal."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def add_model_args(parser: argparse.ArgumentParser) -> None:
    """--store-root, --model-name, --version (a published model) and --data-root (Caltech-101)."""
    parser.add_argument("--store-root", type=Path, default=Path("store"), help="model store folder")
    parser.add_argument("--model-name", default="alexnet-caltech101")
    parser.add_argument("--version", default="latest")
    default_data = os.environ.get("ALEXNET_DATA") or REPO_ROOT.parent / "shared" / "datasets" / "caltech101"
    parser.add_argument("--data-root", type=Path, default=Path(default_data), help="Caltech-101 (env ALEXNET_DATA)")


def command_line(script: str, argv: list[str] | None) -> str:
    """How ``script`` (its ``__file__``) was run, for its report: ``argv`` as given to its main(),
    or this process's own arguments."""
    return f"python benchmarks/{Path(script).name} " + " ".join(argv if argv is not None else sys.argv[1:])


def write_report(path: Path, report: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(report)
    print(report)
