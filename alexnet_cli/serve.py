"""``alexnet serve``: serve the latest published model, installing (or training) the default one
first with ``--build-if-missing``. The service's settings come from the environment (``ALEXNET_*``)
with this command's flags over them, handed to ``service.__main__.serve`` as a ``Settings``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from alexnet_cli.common import FROM_SCRATCH_HELP, SHIPPED_ROOT_HELP, Subparsers, add_store_args
from alexnet_cli.default_model import DEFAULT_BUILD_EPOCHS, build_default_model, build_epochs_default


def cmd_serve(args: argparse.Namespace) -> int:
    from model_store.store import list_versions

    if not list_versions(args.store_root, args.model_name):
        if not args.build_if_missing:
            print(
                f"no published versions of {args.model_name} under {args.store_root}; train one with "
                "`alexnet train` or pass --build-if-missing",
                file=sys.stderr,
            )
            return 2
        build_default_model(args.store_root, args.model_name, args.build_epochs, args.from_scratch, args.shipped_root)
    from service.__main__ import read_settings, serve
    from service.settings import bind_overrides

    settings = read_settings(store_root=args.store_root, model_name=args.model_name, **bind_overrides(args))
    return 2 if settings is None else serve(settings)


def add_serve(sub: Subparsers) -> None:
    from service.settings import add_bind_args, settings_help

    p = sub.add_parser(
        "serve",
        help="serve a published model (settings: ALEXNET_* variables)",
        epilog=settings_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_store_args(p)
    p.add_argument(
        "--build-if-missing",
        action="store_true",
        help="install the shipped model (or, with --from-scratch, train one) first when the store has none",
    )
    p.add_argument("--from-scratch", action="store_true", help=FROM_SCRATCH_HELP)
    p.add_argument("--shipped-root", type=Path, default=None, help=SHIPPED_ROOT_HELP)
    p.add_argument(
        "--build-epochs",
        type=int,
        default=build_epochs_default(),
        help=f"epochs of the default model (env ALEXNET_BUILD_EPOCHS; default {DEFAULT_BUILD_EPOCHS})",
    )
    add_bind_args(p)
    p.set_defaults(func=cmd_serve)
