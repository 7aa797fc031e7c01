"""``alexnet build-default``, ``ship`` and ``install``: the default model and the shipped artifact."""

from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path
from typing import Any

from alexnet_cli.common import FROM_SCRATCH_HELP, SHIPPED_ROOT_HELP, Subparsers, add_store_args, print_version

DEFAULT_BUILD_EPOCHS = 8
# The recipe of the default model and of the recorded CPU run (docs/training-caltech101.md): the
# paper's, with these named deviations, so it learns within a few epochs on a CPU. The paper's
# N(0, 0.01) init on raw pixels sits at chance for many epochs on Caltech-101's 3,000 images.
DEFAULT_MODEL_DEVIATIONS: dict[str, Any] = {
    "init": "kaiming",
    "input_scale": 1 / 64,
    "warmup_epochs": 1.0,
    "clip_grad_norm": 5.0,
    "lr_patience": 3,
}


def build_epochs_default() -> int:
    """ALEXNET_BUILD_EPOCHS, else ``DEFAULT_BUILD_EPOCHS``."""
    return int(os.environ.get("ALEXNET_BUILD_EPOCHS", DEFAULT_BUILD_EPOCHS))


def build_default_model(
    store_root: Path, model_name: str, epochs: int, from_scratch: bool = False, shipped_root: Path | None = None
) -> Path:
    """Publish the default model with its gallery index: the shipped one (``<shipped_root>/<model_name>``,
    by default ``shipped/`` in this checkout), or, with ``from_scratch`` (or when nothing is shipped under
    that name), one trained here on Caltech-101's train30 for ``epochs``."""
    from training.config import TrainConfig
    from training.pipeline import publish_run
    from training.shipped import SHIPPED_ROOT, install
    from training.train import train

    artifact = (shipped_root or SHIPPED_ROOT) / model_name
    if not from_scratch and artifact.is_dir():
        logging.getLogger(__name__).info("the store has no %s: installing the shipped model %s", model_name, artifact)
        return install(artifact, store_root, model_name)

    cfg = TrainConfig(out=f"runs/{model_name}-default", epochs=epochs, **DEFAULT_MODEL_DEVIATIONS)
    logging.getLogger(__name__).info(
        "the store has no %s: training a default model for %d epochs on %s (%s)",
        model_name,
        epochs,
        cfg.data,
        cfg.split,
    )
    return publish_run(train(cfg), store_root, model_name)


def cmd_build_default(args: argparse.Namespace) -> int:
    from model_store.store import list_versions

    if list_versions(args.store_root, args.model_name) and not args.force:
        print(f"{args.model_name} is already published under {args.store_root} (pass --force to build another version)")
        return 0
    print_version(
        build_default_model(args.store_root, args.model_name, args.epochs, args.from_scratch, args.shipped_root)
    )
    return 0


def cmd_ship(args: argparse.Namespace) -> int:
    from training.pipeline import load_run
    from training.shipped import SHIPPED_ROOT, pack

    out = args.out or SHIPPED_ROOT / args.model_name
    provenance = pack(load_run(args.run), args.run, out, evaluate_test=not args.skip_eval, notes=args.notes)
    print(f"packed {args.run} into {out}: {provenance['weights']['bytes'] / 1e6:.1f} MB")
    print(json.dumps(provenance["metrics"], indent=2))
    return 0


def cmd_install(args: argparse.Namespace) -> int:
    from training.shipped import SHIPPED_ROOT, install

    artifact = args.artifact or SHIPPED_ROOT / args.model_name
    version_dir = install(
        artifact, args.store_root, args.model_name, index=not args.no_index, fast_paths=args.fast_paths
    )
    print_version(version_dir)
    return 0


def add_build_default(sub: Subparsers) -> None:
    p = sub.add_parser("build-default", help="train and publish the default Caltech-101 model if the store has none")
    add_store_args(p)
    p.add_argument(
        "--epochs",
        type=int,
        default=build_epochs_default(),
        help=f"epochs (env ALEXNET_BUILD_EPOCHS; default {DEFAULT_BUILD_EPOCHS})",
    )
    p.add_argument("--force", action="store_true", help="build a new version even when one is published")
    p.add_argument("--from-scratch", action="store_true", help=FROM_SCRATCH_HELP)
    p.add_argument("--shipped-root", type=Path, default=None, help=SHIPPED_ROOT_HELP)
    p.set_defaults(func=cmd_build_default)


def add_ship(sub: Subparsers) -> None:
    p = sub.add_parser("ship", help="pack a run into the shipped artifact (int8 weights, parity logits, provenance)")
    p.add_argument("--run", type=Path, required=True, help="run folder (with best.pt)")
    p.add_argument("--out", type=Path, default=None, help="artifact folder (default: shipped/<model name>)")
    p.add_argument("--skip-eval", action="store_true", help="pack without evaluating on the test split")
    p.add_argument("--notes", default="", help="what the provenance should also say (e.g. how the run was resumed)")
    add_store_args(p)
    p.set_defaults(func=cmd_ship)


def add_install(sub: Subparsers) -> None:
    p = sub.add_parser("install", help="publish the shipped artifact into the store, with its gallery index")
    p.add_argument("--artifact", type=Path, default=None, help="artifact folder (default: shipped/<model name>)")
    p.add_argument("--no-index", action="store_true", help="publish without building the gallery index")
    p.add_argument(
        "--fast-paths", action="store_true", help="also publish model.bf16.onnx and model.int8.onnx (about a minute)"
    )
    add_store_args(p)
    p.set_defaults(func=cmd_install)
