"""``alexnet``: the project's commands in one place.

alexnet train ...        train (paper recipe), evaluate on the test split, export, check parity, publish, index
alexnet publish --run D  do the steps after training for an existing run folder
alexnet evaluate --run D centre-crop and 10-crop top-1/top-5 and mean per-class accuracy of a run
alexnet export --run D   export a run's best checkpoint to ONNX and check parity (no publishing)
alexnet index ...        (re)build the gallery index of a published version
alexnet models           list the published models, versions and their test metrics
alexnet ship --run D     pack a run into the shipped artifact (shipped/<model>/: int8 weights, provenance)
alexnet install          publish the shipped artifact into the store (ONNX, parity check, gallery index)
alexnet build-default    install the shipped model when the store has none (--from-scratch: train one)
alexnet serve            serve the latest published model (installing the shipped model first when
                         the store is empty and --build-if-missing is given)
"""

from __future__ import annotations

import argparse
import logging
import sys

from alexnet_cli import default_model, index, serve, store_commands, training_commands

# Each adds its sub-command's parser (arguments and ``func``), in the order ``--help`` lists them.
SUBCOMMANDS = (
    training_commands.add_train,
    training_commands.add_publish,
    training_commands.add_evaluate,
    training_commands.add_export,
    index.add_index,
    store_commands.add_quantize,
    store_commands.add_models,
    default_model.add_build_default,
    default_model.add_ship,
    default_model.add_install,
    serve.add_serve,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="alexnet",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for add in SUBCOMMANDS:
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("faiss.loader").setLevel(logging.WARNING)  # which CPU build it picked, at length
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except Exception as exc:  # noqa: BLE001 - one clear line for the command line, the trace in the log
        from model_store.store import StoreError
        from training.data import DatasetError
        from training.export import ParityError
        from training.shipped import ArtifactError

        if isinstance(exc, DatasetError | StoreError | FileExistsError | ArtifactError | ParityError):
            print(f"alexnet {args.command}: {exc}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
