"""``alexnet train``, ``publish``, ``evaluate`` and ``export``: the commands on a run folder."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

from alexnet_cli.common import Subparsers, add_store_args, print_version

if TYPE_CHECKING:
    from training.config import TrainConfig


def add_train_config_args(parser: argparse.ArgumentParser) -> None:
    """One flag per ``TrainConfig`` field, with its help and default."""
    from training.config import TrainConfig

    for f in dataclasses.fields(TrainConfig):
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        flag = "--" + f.name.replace("_", "-")
        if isinstance(default, bool):
            parser.add_argument(flag, action="store_true", help=f.metadata["help"])
        else:
            parser.add_argument(
                flag, type=type(default), default=default, help=f"{f.metadata['help']} (default: {default})"
            )


def config_from(args: argparse.Namespace) -> TrainConfig:
    from training.config import TrainConfig

    return TrainConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)})


def cmd_train(args: argparse.Namespace) -> int:
    from training.pipeline import publish_run
    from training.train import train

    run_dir = train(config_from(args))
    if int(os.environ.get("RANK", "0")) != 0 or args.no_publish:
        return 0
    version_dir = publish_run(
        run_dir, args.store_root, args.model_name, index=not args.no_index, fast_paths=not args.no_fast_paths
    )
    print_version(version_dir)
    return 0


def cmd_publish(args: argparse.Namespace) -> int:
    from training.pipeline import publish_run

    version_dir = publish_run(
        args.run,
        args.store_root,
        args.model_name,
        args.split,
        index=not args.no_index,
        evaluate_test=not args.skip_eval,
        fast_paths=not args.no_fast_paths,
    )
    print_version(version_dir)
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    import torch

    from training.data import TEST_SPLIT_OF
    from training.pipeline import evaluate_run, load_run

    run = load_run(args.run)
    split = args.split or TEST_SPLIT_OF.get(run.config.split, run.config.split)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    results = evaluate_run(run, split, device)
    print(json.dumps({tta: r.as_dict() for tta, r in results.items()}, indent=2))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from training.data import TEST_SPLIT_OF
    from training.export import check_parity, export_onnx
    from training.pipeline import load_run, parity_images

    run = load_run(args.run)
    export_onnx(run.model, args.out, run.config.crop)
    split = TEST_SPLIT_OF.get(run.config.split, run.config.split)
    print(json.dumps(check_parity(run.model, args.out, parity_images(run, split)).as_dict(), indent=2))
    return 0


def add_publish_flags(p: argparse.ArgumentParser) -> None:
    """What `train` and `publish` may leave out of the version they publish."""
    p.add_argument("--no-index", action="store_true", help="publish without building the gallery index")
    p.add_argument("--no-fast-paths", action="store_true", help="publish without model.int8.onnx and model.bf16.onnx")


def add_train(sub: Subparsers) -> None:
    p = sub.add_parser("train", help="train, evaluate, export, publish and index")
    add_train_config_args(p)
    add_store_args(p)
    p.add_argument("--no-publish", action="store_true", help="stop after training")
    add_publish_flags(p)
    p.set_defaults(func=cmd_train)


def add_publish(sub: Subparsers) -> None:
    p = sub.add_parser("publish", help="evaluate, export, publish and index an existing run")
    p.add_argument("--run", type=Path, required=True, help="run folder (with best.pt)")
    p.add_argument("--split", default=None, help="test split (default: the one matching the training split)")
    p.add_argument("--skip-eval", action="store_true", help="publish without the test-split evaluation")
    add_publish_flags(p)
    add_store_args(p)
    p.set_defaults(func=cmd_publish)


def add_evaluate(sub: Subparsers) -> None:
    p = sub.add_parser("evaluate", help="centre and 10-crop evaluation of a run's best checkpoint")
    p.add_argument("--run", type=Path, required=True)
    p.add_argument("--split", default=None)
    p.set_defaults(func=cmd_evaluate)


def add_export(sub: Subparsers) -> None:
    p = sub.add_parser("export", help="export a run to ONNX and check parity")
    p.add_argument("--run", type=Path, required=True)
    p.add_argument("--out", type=Path, default=Path("model.onnx"))
    p.set_defaults(func=cmd_export)
