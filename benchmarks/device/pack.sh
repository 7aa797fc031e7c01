#!/usr/bin/env bash
# Packs what benchmarks/device/run.sh needs on the GPU machine into .gpuwork/ (git-ignored):
# onnxruntime-gpu (CUDA 13 build) as xz parts of 61 MiB, since one call to the device
# machine carries at most 64 MiB; the service's pure-Python wheels and faiss-cpu for Python 3.12;
# a small Caltech-101 subset (3 train30 and 1 test30 image per class) to build a model store there.
#
#   bash benchmarks/device/pack.sh [caltech101 root]
#
# Then, on the device machine, one call per part (.gpuwork/p1, p2, ...: each run copies its part to
# /tmp/parts, which lasts while the machine stays warm), and the last call carries .gpuwork/final
# and runs benchmarks/device/run.sh. See docs/performance.md, "The GPU path".
set -euo pipefail
cd "$(dirname "$0")/../.."
DATA=${1:-../shared/datasets/caltech101}
WORK=.gpuwork
DL=$WORK/download
mkdir -p "$DL" "$WORK/final/whl"
grep -qx '/.gpuwork/' .git/info/exclude || echo '/.gpuwork/' >>.git/info/exclude

pip_get() {
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d "$1" "${@:2}"
}
pip_get "$DL" onnxruntime-gpu==1.31.1
pip_get "$WORK/final/whl" faiss-cpu==1.15.1 fastapi==0.165.0 starlette==1.10.0 uvicorn==0.54.0 \
  python-multipart==0.0.34 pydantic==2.14.4 pydantic-core==2.50.5 pydantic-settings==2.16.3 \
  python-dotenv==1.2.4 annotated-types==0.8.0 typing-inspection==0.4.5 typing-extensions==4.16.0

# onnxruntime-gpu without TensorRT's provider and the Python-only tools the service never imports
if [ ! -f "$WORK/ort.tar.xz" ]; then
  rm -rf "$DL/ort" && mkdir -p "$DL/ort" && unzip -q "$DL"/onnxruntime_gpu-*.whl -d "$DL/ort"
  tar -C "$DL/ort" -cf - --exclude='onnxruntime/capi/libonnxruntime_providers_tensorrt.so' \
    --exclude='onnxruntime/transformers' --exclude='onnxruntime/quantization' --exclude='onnxruntime/tools' \
    onnxruntime onnxruntime_gpu-1.31.1.dist-info | xz -T0 -9e >"$WORK/ort.tar.xz"
fi
rm -rf "$WORK"/p[0-9] "$WORK/final"/ort.tar.xz.*
(cd "$WORK" && sha256sum ort.tar.xz >final/ort.tar.xz.sha256)
split -b 61M -d -a 1 "$WORK/ort.tar.xz" "$WORK/ort.tar.xz."
for part in "$WORK"/ort.tar.xz.*; do
  n=${part##*.}
  mkdir -p "$WORK/p$((n + 1))" && mv "$part" "$WORK/p$((n + 1))/"
done
# the last part is small: it travels with the final call
last=$(ls -d "$WORK"/p[0-9] | sort | tail -1)
if [ "$(du -m "$last" | cut -f1)" -lt 32 ]; then mv "$last"/ort.tar.xz.* "$WORK/final/" && rmdir "$last"; fi

python3 - "$DATA" "$WORK/final/data" <<'PY'
import shutil, sys
from pathlib import Path
src, dst = Path(sys.argv[1]), Path(sys.argv[2])
shutil.rmtree(dst, ignore_errors=True)
(dst / "splits").mkdir(parents=True)
shutil.copy(src / "classes.txt", dst / "classes.txt")
for split, per_class in (("train30", 3), ("test30", 1)):
    taken, lines = {}, []
    for line in (src / "splits" / f"{split}.txt").read_text().split():
        cls = line.split("/", 1)[0]
        if taken.get(cls, 0) < per_class:
            taken[cls] = taken.get(cls, 0) + 1
            lines.append(line)
            (dst / "images" / cls).mkdir(parents=True, exist_ok=True)
            shutil.copy(src / "images" / line, dst / "images" / line)
    (dst / "splits" / f"{split}.txt").write_text("\n".join(lines) + "\n")
PY
du -sh "$WORK"/p* "$WORK/final"
