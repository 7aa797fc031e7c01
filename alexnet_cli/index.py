"""``alexnet index``: (re)build the gallery index of a published version (``training.index``)."""

from __future__ import annotations

import argparse
from pathlib import Path

from alexnet_cli.common import Subparsers


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    from training.index import DEFAULT_BATCH_SIZE

    parser.add_argument("--store-root", type=Path, default=Path("store"), help="model store folder (default: store)")
    parser.add_argument("--model-name", default="alexnet-caltech101", help="published model name")
    parser.add_argument("--version", default="latest", help="model version: vN or latest (default: latest)")
    parser.add_argument("--data-root", type=Path, required=True, help="dataset root with images/ and splits/")
    parser.add_argument("--split", default="train30", help="split whose images form the gallery (default: train30)")
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE, help="images per ONNX Runtime run")
    parser.add_argument("--classes", nargs="+", default=None, help="only these classes (default: all)")
    parser.add_argument("--per-class", type=int, default=None, help="at most this many images per class")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing index of the version")
    parser.add_argument(
        "--index-kind",
        default="flat",
        help="FAISS index: flat (default: exact), sq_fp16, ivf_pq, opq_ivf_pq or binary (approximate, for large"
        " galleries; trained on the gallery, at least 1000 images); see docs/scaling-index.md",
    )
    return parser


def run(args: argparse.Namespace) -> int:
    from training.index import build_gallery_index

    index_dir = build_gallery_index(
        store_root=args.store_root,
        model_name=args.model_name,
        version=args.version,
        data_root=args.data_root,
        split=args.split,
        batch_size=args.batch_size,
        classes=args.classes,
        per_class=args.per_class,
        overwrite=args.overwrite,
        index_kind=args.index_kind,
    )
    print(index_dir)
    return 0


def add_index(sub: Subparsers) -> None:
    p = sub.add_parser("index", help="build the gallery index of a published version")
    add_arguments(p)
    p.set_defaults(func=run)
