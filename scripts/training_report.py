"""Render a published version's training and evaluation figures as Markdown (for docs/).

    python scripts/training_report.py store/alexnet-caltech101/v1 --run runs/caltech101-train30 \
        --out docs/training-caltech101.md

Every number comes from the version's manifest/metrics and the run's metrics log; the curves plot
is copied next to the report.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model_store.store import read_manifest  # noqa: E402
from training.train import read_metrics  # noqa: E402


def render(version_dir: Path, run_dir: Path, curves_name: str) -> str:
    manifest = read_manifest(version_dir)
    m = manifest.metrics
    history = read_metrics(run_dir)
    cfg = manifest.recipe["config"]
    lines = [
        f"# {manifest.name}/{manifest.version}: AlexNet trained from scratch on Caltech-101 ({cfg['split']})",
        "",
        f"- Machine: {m['machine']['processor']}, {m['machine'].get('cpu_count', '?')} CPUs "
        f"({m['machine']['platform']}), torch {m['machine']['torch']}, device `{m['machine']['device']}`"
        f"{' (' + m['machine']['gpu'] + ')' if 'gpu' in m['machine'] else ''}.",
        f"- Epochs trained: {m['epochs_trained']} (best validation error at epoch {m['best_epoch']}); "
        f"{m.get('seconds_per_epoch', 0):.0f} s per epoch, "
        f"{m.get('train_images_per_second', 0):.1f} training images/s.",
        f"- Test split `{m['test_split']}`, {m['test']['center']['images']} images, {len(manifest.labels)}-way.",
        f"- Deviations from the paper's recipe: `{json.dumps(manifest.recipe['deviations'])}`.",
        "",
        "| test | top-1 error | top-5 error | top-1 accuracy | mean per-class accuracy |",
        "|---|---:|---:|---:|---:|",
    ]
    for tta in ("center", "ten_crop"):
        r = m["test"][tta]
        lines.append(
            f"| {tta.replace('_', '-')} | {r['top1_error']:.4f} | {r['top5_error']:.4f} | "
            f"{1 - r['top1_error']:.4f} | {r['mean_per_class_accuracy']:.4f} |"
        )
    p = m["onnx_parity"]
    lines += [
        "",
        f"ONNX Runtime vs PyTorch on {p['batch']} real test crops: max abs error {p['max_abs_logits']:.2e} (logits), "
        f"{p['max_abs_features']:.2e} (fc7); relative {p['rel_logits']:.2e} / {p['rel_features']:.2e}; "
        f"top-1 agreement {p['top1_agreement']:.3f}.",
        "",
        f"![training curves]({curves_name})",
        "",
        "| epoch | lr | train loss | train top-1 acc (augmented) | val top-1 err | val top-5 err | s/epoch | img/s |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in history:
        lines.append(
            f"| {r['epoch']} | {r['lr']:g} | {r['train_loss']:.3f} | {r['train_top1_acc']:.3f} | "
            f"{r.get('val_top1_error', float('nan')):.3f} | {r.get('val_top5_error', float('nan')):.3f} | "
            f"{r['epoch_seconds']:.0f} | {r['images_per_second']:.1f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("version_dir", type=Path)
    parser.add_argument("--run", type=Path, required=True, help="the run folder (metrics.jsonl, curves.png)")
    parser.add_argument("--out", type=Path, default=Path("docs/training-caltech101.md"))
    args = parser.parse_args()
    curves = args.out.with_name(args.out.stem + "-curves.png")
    shutil.copyfile(args.run / "curves.png", curves)
    args.out.write_text(render(args.version_dir, args.run, curves.name))
    print(args.out.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
