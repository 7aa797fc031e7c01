"""``alexnet quantize`` and ``alexnet models``: the commands on published versions (``alexnet index``
has its own module, ``index.py``)."""

from __future__ import annotations

import argparse
from pathlib import Path

from alexnet_cli.common import Subparsers, add_store_args, print_version


def cmd_quantize(args: argparse.Namespace) -> int:
    from training.quantize import publish_int8_version

    version_dir = publish_int8_version(args.store_root, args.model_name, args.version, args.data)
    print_version(version_dir)
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from model_store.store import list_models, list_versions, read_manifest

    for name in list_models(args.store_root):
        for version in list_versions(args.store_root, name):
            manifest = read_manifest(args.store_root / name / version)
            test = manifest.metrics.get("test", {})
            scores = "  ".join(
                f"{tta}: top-1 err {m['top1_error']:.3f}, top-5 err {m['top5_error']:.3f}" for tta, m in test.items()
            )
            print(f"{name}/{version}  {manifest.created}  {len(manifest.labels)} classes  {scores}")
    return 0


def add_quantize(sub: Subparsers) -> None:
    p = sub.add_parser("quantize", help="publish a new version of a model with its int8 model added")
    add_store_args(p)
    p.add_argument("--version", default="latest", help="the version to quantize (default: latest)")
    p.add_argument("--data", type=Path, default=None, help="dataset root (default: the one it was trained on)")
    p.set_defaults(func=cmd_quantize)


def add_models(sub: Subparsers) -> None:
    p = sub.add_parser("models", help="list published models")
    add_store_args(p)
    p.set_defaults(func=cmd_models)
