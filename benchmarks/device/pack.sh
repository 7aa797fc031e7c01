#!/usr/bin/env bash
# Packs what benchmarks/device/run.sh needs on the GPU machine into .gpuwork/ (git-ignored):
# onnxruntime-gpu (CUDA 13 build) as xz parts of 61 MiB, since one call to the device
# machine carries at most 64 MiB; the service's pure-Python wheels and faiss-cpu for Python 3.12;
# a small Caltech-101 subset (3 train30 and 1 test30 image per class) to build a model store there.
#
#   bash benchmarks/device/pack.sh [caltech101 root]
#
#   FAISS_GPU=1 bash benchmarks/device/pack.sh [caltech101 root]   # also FAISS's GPU build (f1, f2, ...)
#
# Then, on the device machine, one call per part folder (.gpuwork/p1, p2, ..., f1, f2, ...), each
# carrying its folder and running `mkdir -p /tmp/parts && cp .gpuwork/<folder>/* /tmp/parts/`
# (/tmp/parts lasts while the machine stays warm: call again within its idle time), and a last call
# carrying .gpuwork/final that runs benchmarks/device/run.sh. See docs/performance.md, "The GPU path".
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
  python-dotenv==1.2.4 annotated-types==0.8.0 typing-inspection==0.4.5 typing-extensions==4.16.0 \
  opentelemetry-api==1.45.2 importlib-metadata==10.2.0

# onnxruntime-gpu without TensorRT's provider and the Python-only tools the service never imports
if [ ! -f "$WORK/ort.tar.xz" ]; then
  rm -rf "$DL/ort" && mkdir -p "$DL/ort" && unzip -q "$DL"/onnxruntime_gpu-*.whl -d "$DL/ort"
  tar -C "$DL/ort" -cf - --exclude='onnxruntime/capi/libonnxruntime_providers_tensorrt.so' \
    --exclude='onnxruntime/transformers' --exclude='onnxruntime/quantization' --exclude='onnxruntime/tools' \
    onnxruntime onnxruntime_gpu-1.31.1.dist-info | xz -T0 -9e >"$WORK/ort.tar.xz"
fi
# split_parts FILE PREFIX: FILE in 61 MiB parts, one folder each ($WORK/PREFIX1, PREFIX2, ...), the
# last one with the final call when it is small; its sha256 goes with the final call
split_parts() {
  local file=$1 prefix=$2 name
  name=$(basename "$file")
  rm -rf "$WORK/$prefix"[0-9] "$WORK/$prefix"[0-9][0-9] "$WORK/final/$name".*
  (cd "$(dirname "$file")" && sha256sum "$name") >"$WORK/final/$name.sha256"
  split -b 61M -d -a 2 "$file" "$WORK/$name."
  for part in "$WORK/$name".[0-9][0-9]; do
    n=$((10#${part##*.} + 1))
    mkdir -p "$WORK/$prefix$n" && mv "$part" "$WORK/$prefix$n/"
  done
  local last
  last=$(ls -d "$WORK/$prefix"[0-9]* | sort -V | tail -1)
  if [ "$(du -m "$last" | cut -f1)" -lt 32 ]; then mv "$last/$name".* "$WORK/final/" && rmdir "$last"; fi
}
split_parts "$WORK/ort.tar.xz" p

# FAISS_GPU=1: faiss-gpu-cu12 and the CUDA 12 runtime and cuBLAS it preloads (about 630 MB, ten
# more calls), for run.sh's `faiss` step
if [ "${FAISS_GPU:-0}" = 1 ]; then
  rm -rf "$DL/faiss" && mkdir -p "$DL/faiss"
  pip_get "$DL/faiss" faiss-gpu-cu12==1.14.1.post1 nvidia-cublas-cu12==12.9.3.13 nvidia-cuda-runtime-cu12==12.9.79
  tar -C "$DL/faiss" -cf "$WORK/faiss-gpu.tar" .
  split_parts "$WORK/faiss-gpu.tar" f
fi

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
