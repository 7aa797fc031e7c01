"""``alexnet-client``: the service from the command line.

Prints aligned tables, or the API's results as JSON with ``--json``. Exits 0 on success, 1 with
the server's message on an API or connection error (and from ``health`` when the service is not
ready), 2 on bad usage.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ._client import Client
from ._constants import API_KEY_ENV, BASE_URL_ENV, DEFAULT_BASE_URL, DEFAULT_MAX_RETRIES, DEFAULT_TIMEOUT
from ._exceptions import APIError, APIStatusError
from ._version import __version__
from .types import ClassifyResponse, SimilarResponse

PROG = "alexnet-client"


def format_table(headers: Sequence[str], rows: Sequence[Sequence[object]], right: Sequence[int] = ()) -> str:
    """Rows under headers in aligned columns; the columns numbered in ``right`` are right-aligned."""
    cells = [[str(h) for h in headers], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = []
    for row in cells:
        padded = [c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))]
        lines.append("  ".join(padded).rstrip())
    return "\n".join(lines)


def _footer(response: ClassifyResponse | SimilarResponse, mode: str) -> str:
    return f"model {response.model.name} {response.model.version}, {mode}, {response.elapsed_ms:.1f} ms"


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, ensure_ascii=False))


def cmd_classify(client: Client, args: argparse.Namespace) -> int:
    response = client.classify(args.images, top_k=args.top_k, tta=args.tta)
    if args.json:
        _print_json(dataclasses.asdict(response))
        return 0
    rows = []
    for result in response.results:
        for rank, prediction in enumerate(result.predictions, start=1):
            first = rank == 1
            rows.append([
                result.filename if first else "",
                f"{result.width}x{result.height}" if first else "",
                rank,
                prediction.label,
                f"{prediction.probability:.4f}",
            ])  # fmt: skip
    print(format_table(["image", "size", "rank", "label", "probability"], rows, right=(2, 4)))
    print(_footer(response, f"tta {response.tta}"))
    return 0


def cmd_similar(client: Client, args: argparse.Namespace) -> int:
    response = client.similar(args.image, id=args.id, k=args.k, feature=args.feature)
    if args.json:
        _print_json(dataclasses.asdict(response))
        return 0
    query = response.query
    described = f"gallery item {query.id}" if query.id is not None else (query.filename or "uploaded image")
    if query.label:
        described += f" ({query.label})"
    if query.predictions:
        top = query.predictions[0]
        described += f", predicted {top.label} {top.probability:.4f}"
    print(f"query: {described}")
    rows = [
        [rank, n.id, n.label, f"{n.distance:.4f}", n.source or ""] for rank, n in enumerate(response.neighbors, start=1)
    ]
    print(format_table(["rank", "id", "label", "distance", "source"], rows, right=(0, 1, 3)))
    print(_footer(response, f"feature {response.feature}"))
    return 0


def cmd_add(client: Client, args: argparse.Namespace) -> int:
    response = client.add_to_index(args.images, args.label)
    if args.json:
        _print_json(dataclasses.asdict(response))
        return 0
    print(format_table(["id", "label"], [[item.id, item.label] for item in response.added], right=(0,)))
    return 0


def cmd_remove(client: Client, args: argparse.Namespace) -> int:
    response = client.remove_from_index(args.id)
    if args.json:
        _print_json(dataclasses.asdict(response))
    else:
        print(f"deleted {response.id}")
    return 0


def cmd_health(client: Client, args: argparse.Namespace) -> int:
    health = client.health()
    readiness = client.ready()
    if args.json:
        _print_json({"health": dataclasses.asdict(health), "ready": dataclasses.asdict(readiness)})
    else:
        ready = readiness.status if readiness.ready else f"not ready ({readiness.status})"
        print(format_table(["check", "status"], [["health", health.status], ["ready", ready]]))
    return 0 if readiness.ready else 1


def cmd_info(client: Client, args: argparse.Namespace) -> int:
    info = client.model_info()
    if args.json:
        _print_json(dataclasses.asdict(info))
        return 0
    rows: list[list[object]] = [
        ["model", info.name],
        ["version", info.version],
        ["variant", info.variant],
        ["classes", info.num_classes],
        ["feature dim", info.feature_dim],
        ["provider", info.provider],
        ["gallery size", info.gallery_size],
        ["created", info.created or ""],
    ]
    rows += _test_rows(info.metrics)
    rows += [
        [f"metric {name}", value]
        for name, value in info.metrics.items()
        if name != "test_split" and not isinstance(value, dict | list)
    ]
    print(format_table(["field", "value"], rows))
    return 0


def _test_rows(metrics: Mapping[str, Any]) -> list[list[object]]:
    """The test split and, for each test-time augmentation it was evaluated with, top-1 and mean
    per-class accuracy: ``metrics["test"]`` is {tta: {"top1_error", "mean_per_class_accuracy", ...}},
    absent when the model was published without evaluating it."""
    rows: list[list[object]] = [["test split", metrics["test_split"]]] if "test_split" in metrics else []
    test = metrics.get("test")
    results = {
        tta: result
        for tta, result in (test.items() if isinstance(test, Mapping) else ())
        if isinstance(result, Mapping)
        and isinstance(result.get("top1_error"), int | float)
        and isinstance(result.get("mean_per_class_accuracy"), int | float)
    }
    if not results:
        return [*rows, ["test accuracy", "not measured (published without a test evaluation)"]]
    for tta, result in results.items():
        rows.append([f"top-1 accuracy ({tta})", f"{1 - result['top1_error']:.2%}"])
        rows.append([f"mean per-class accuracy ({tta})", f"{result['mean_per_class_accuracy']:.2%}"])
    return rows


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description="Client of the AlexNet classification and retrieval service."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "--url", default=None, help=f"service base URL (default: ${BASE_URL_ENV}, else {DEFAULT_BASE_URL})"
    )
    parser.add_argument("--api-key", default=None, help=f"API key for add/remove (default: ${API_KEY_ENV})")
    parser.add_argument(
        "--timeout", type=float, default=None, help=f"seconds to wait for an answer (default: {DEFAULT_TIMEOUT.read:g})"
    )
    parser.add_argument(
        "--max-retries",
        type=int,
        default=DEFAULT_MAX_RETRIES,
        help=f"retries on connection errors and 408/429/502/503/504 (default: {DEFAULT_MAX_RETRIES})",
    )
    output = argparse.ArgumentParser(add_help=False)
    output.add_argument("--json", action="store_true", help="print the result as JSON instead of a table")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    classify = commands.add_parser("classify", parents=[output], help="classify images")
    classify.add_argument("images", nargs="+", metavar="IMAGE", help="image files")
    classify.add_argument("--top-k", type=int, default=5, help="predictions per image (default: 5)")
    classify.add_argument(
        "--tta", choices=["ten_crop", "center"], default="ten_crop", help="test-time augmentation (default: ten_crop)"
    )
    classify.set_defaults(handler=cmd_classify)

    similar = commands.add_parser("similar", parents=[output], help="find gallery images similar to an image or item")
    similar.add_argument("image", nargs="?", metavar="IMAGE", help="query image file")
    similar.add_argument("--id", type=int, help="use gallery item ID as the query instead of an image")
    similar.add_argument("--k", "-k", type=int, default=6, help="number of neighbours (default: 6)")
    similar.add_argument(
        "--feature", choices=["center", "ten_crop"], default="center", help="query feature (default: center)"
    )
    similar.set_defaults(handler=cmd_similar)

    add = commands.add_parser("add", parents=[output], help="add images to the gallery (needs the API key)")
    add.add_argument("images", nargs="+", metavar="IMAGE", help="image files")
    add.add_argument(
        "--label", action="append", required=True, help="label for all images, or repeat once per image, in order"
    )
    add.set_defaults(handler=cmd_add)

    remove = commands.add_parser("remove", parents=[output], help="remove a gallery item (needs the API key)")
    remove.add_argument("id", type=int, metavar="ID", help="gallery item id")
    remove.set_defaults(handler=cmd_remove)

    health = commands.add_parser("health", parents=[output], help="liveness and readiness (exit 1 if not ready)")
    health.set_defaults(handler=cmd_health)

    info = commands.add_parser(
        "info", parents=[output], help="the served model, its test accuracy, provider and gallery"
    )
    info.set_defaults(handler=cmd_info)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "similar" and (args.image is None) == (args.id is None):
        parser.error("similar: give either IMAGE or --id, not both")
    handler: Callable[[Client, argparse.Namespace], int] = args.handler
    try:
        timeout = DEFAULT_TIMEOUT if args.timeout is None else args.timeout
        with Client(args.url, api_key=args.api_key, timeout=timeout, max_retries=args.max_retries) as client:
            return handler(client, args)
    except APIStatusError as error:
        code = f" {error.code}" if error.code else ""
        request = f", request {error.request_id}" if error.request_id else ""
        print(f"{PROG}: error: {error.message} (HTTP {error.status_code}{code}{request})", file=sys.stderr)
    except APIError as error:
        print(f"{PROG}: error: {error.message}", file=sys.stderr)
    except (OSError, ValueError) as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
    return 1
