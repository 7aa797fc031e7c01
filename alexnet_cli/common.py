"""What several ``alexnet`` sub-commands share: the store arguments and printing a published version."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

DEFAULT_MODEL_NAME = "alexnet-caltech101"
FROM_SCRATCH_HELP = "train the default model here (--build-epochs) instead of installing the shipped one"
SHIPPED_ROOT_HELP = "folder of shipped artifacts, one per model name (default: shipped/ in this checkout)"
Subparsers = argparse._SubParsersAction  # what ``add_subparsers`` returns; each command module adds its parsers to it


def add_store_args(parser: argparse.ArgumentParser) -> None:
    """``--store-root`` and ``--model-name``, defaulting to ALEXNET_STORE_ROOT and ALEXNET_MODEL_NAME."""
    parser.add_argument(
        "--store-root",
        type=Path,
        default=Path(os.environ.get("ALEXNET_STORE_ROOT", "store")),
        help="model store folder (env ALEXNET_STORE_ROOT; default: store)",
    )
    parser.add_argument(
        "--model-name",
        default=os.environ.get("ALEXNET_MODEL_NAME", DEFAULT_MODEL_NAME),
        help=f"published model name (env ALEXNET_MODEL_NAME; default: {DEFAULT_MODEL_NAME})",
    )


def print_version(version_dir: Path) -> None:
    from model_store.store import read_manifest

    manifest = read_manifest(version_dir)
    print(f"published {manifest.name}/{manifest.version} at {version_dir}")
    print(json.dumps(manifest.metrics.get("test", {}), indent=2))
