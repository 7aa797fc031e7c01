#!/usr/bin/env bash
# The GPU checks of docs/performance.md, in one go on the device machine (one NVIDIA GPU, CUDA 13
# libraries from PyTorch's wheels, no network): installs onnxruntime-gpu from the parts that
# benchmarks/device/pack.sh made, builds a small model store (AlexNet, 101 classes, a few real
# training steps: throughput does not depend on the weights), then
#   1. benchmarks/bench_ort_gpu.py: the CUDA provider's parity with the CPU provider and crops/s at
#      batches 1-256, against the CPU provider and PyTorch on the same machine;
#   2. benchmarks/bench_service.py with ALEXNET_PROVIDERS=cuda: the whole /classify and /similar path
#      (HTTP, decoding on the CPU threads, batching, the GPU) against the raw CUDA session, with
#      nvidia-smi's utilisation sampled every second; once with cuDNN's exhaustive kernel search,
#      once with the defaults; then one service process against four replicas sharing the GPU.
#   5. with FAISS_GPU=1 parts: benchmarks/bench_faiss_gpu.py (flat search, GPU against CPU, 100k and
#      1M vectors) and /similar on four GPU replicas with FAISS on the GPU.
# STEPS picks some of: ort exhaustive service replicas faiss (default: all). A device call returns
# at most 8 files, so run a few steps per call (STEPS=faiss once the others have results).
# Results land in $OUT (the device tool's return folder) or /tmp/gpu-out.
#
#   bash benchmarks/device/run.sh
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/gpu-out}
mkdir -p "$OUT" /tmp/parts
WORK=.gpuwork
step() { echo "== $(date +%T) $*"; }

# assemble NAME: $WORK/final/NAME.sha256's file from the parts that earlier calls left in /tmp/parts
# (and any that came with this call), checked; prints its path
assemble() {
  local name=$1
  cp "$WORK"/[a-z][0-9]*/"$name".[0-9][0-9] "$WORK/final/$name".[0-9][0-9] /tmp/parts/ 2>/dev/null
  cat /tmp/parts/"$name".[0-9][0-9] >"/tmp/$name"
  (cd /tmp && sha256sum --quiet -c "$OLDPWD/$WORK/final/$name.sha256") >&2 || return 1
  echo "/tmp/$name"
}

step "onnxruntime-gpu from its parts"
ls -la /tmp/parts
ORT_XZ=$(assemble ort.tar.xz) || exit 3
rm -rf /tmp/site && mkdir -p /tmp/site
xz -dc "$ORT_XZ" | tar -C /tmp/site -xf - || exit 3
# the pure-Python subpackages left out of the parts: the image's own onnxruntime's
ORT_PY=$(python3 -c 'import onnxruntime, os; print(os.path.dirname(onnxruntime.__file__))')
for sub in quantization transformers tools; do cp -r "$ORT_PY/$sub" /tmp/site/onnxruntime/; done
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site "$WORK"/final/whl/*.whl || exit 3
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
# the CUDA 13 and cuDNN libraries of the image's PyTorch wheels (nvidia-*), for ONNX Runtime to load
NVIDIA=$(python3 -c 'import nvidia; print(" ".join(nvidia.__path__))')
LD_LIBRARY_PATH=$(find $NVIDIA -name 'lib*.so*' -printf '%h\n' | sort -u | paste -sd:):${LD_LIBRARY_PATH:-}
export LD_LIBRARY_PATH
nvidia-smi -L
python3 - <<'PY' || { ldd /tmp/site/onnxruntime/capi/libonnxruntime_providers_cuda.so | grep -i "not found"; exit 4; }
import onnxruntime as ort
print("onnxruntime", ort.__version__, ort.get_available_providers())
assert "CUDAExecutionProvider" in ort.get_available_providers()
PY

step "a model store: 101 classes, a few training steps on the GPU, export, publish, gallery index"
STORE=/tmp/store
DATA=$PWD/$WORK/final/data
[ -d $STORE/alexnet-gpu-check ] || timeout 300 python3 -m alexnet_cli train --data "$DATA" --out /tmp/run --cache /tmp/cache --epochs 1 \
  --max-steps-per-epoch 2 --batch-size 32 --no-fast-paths --store-root $STORE --model-name alexnet-gpu-check \
  2>&1 | tail -25 | tee "$OUT/store.log" || exit 5

STEPS=${STEPS:-ort exhaustive service replicas faiss}
wanted() { [[ " $STEPS " == *" $1 "* ]]; }
service_bench() {  # service_bench NAME [bench_service.py arguments...]
  local name=$1
  shift
  nvidia-smi dmon -s u -d 1 >"$OUT/$name.dmon.txt" 2>&1 &
  local dmon=$!
  timeout 300 python3 benchmarks/bench_service.py --store-root $STORE --model-name alexnet-gpu-check \
    --data-root "$DATA" --images 101 --slices 1 --slice-seconds 6 --raw-seconds 2 \
    --env ALEXNET_PROVIDERS=cuda --env ALEXNET_BATCH_MAX_SIZE=256 --env ALEXNET_DECODE_THREADS=16 \
    --env ALEXNET_MAX_QUEUE=256 --output "$OUT/$name.md" "$@" 2>&1 | grep -v " INFO " | tail -12
  kill $dmon
}
if wanted ort; then
  step "1. ONNX Runtime's CUDA provider"
  timeout 240 python3 benchmarks/bench_ort_gpu.py --store-root $STORE --model-name alexnet-gpu-check \
    --data-root "$DATA" --output "$OUT/ort_gpu.md" 2>&1 | tail -40
fi
if wanted exhaustive; then
  step "2. the service on the GPU, cuDNN's exhaustive search per new batch shape (the old default)"
  service_bench service_gpu_exhaustive --scenarios /classify:ten_crop /classify:center --clients 64 \
    --env ALEXNET_CUDA_CONV_ALGO_SEARCH=exhaustive
fi
if wanted service; then
  step "3. the service on the GPU, the defaults (heuristic kernel choice)"
  service_bench service_gpu --clients 16 64
fi
if wanted replicas; then
  step "4. one service process against four (replicas sharing the GPU, clients spread over them)"
  service_bench service_gpu_1_replica --scenarios /classify:ten_crop /classify:center --clients 64
  service_bench service_gpu_4_replicas --scenarios /classify:ten_crop /classify:center --clients 64 --replicas 4
fi
if wanted faiss; then
  step "5. FAISS on the GPU: faiss-gpu-cu12 with the CUDA 12 runtime and cuBLAS it preloads"
  if FAISS_TAR=$(assemble faiss-gpu.tar); then
    rm -rf /tmp/faiss-whl /tmp/site-faiss && mkdir -p /tmp/faiss-whl /tmp/site-faiss
    tar -C /tmp/faiss-whl -xf "$FAISS_TAR"
    python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site-faiss /tmp/faiss-whl/*.whl || exit 6
    export PYTHONPATH=/tmp/site-faiss:$PYTHONPATH # its faiss before faiss-cpu
    python3 -c "import faiss; print('faiss', faiss.__version__, 'GPUs:', faiss.get_num_gpus())"
    timeout 400 python3 benchmarks/bench_faiss_gpu.py --sizes 100000 1000000 --output "$OUT/faiss_gpu.md" 2>&1 |
      tail -12
    service_bench service_gpu_similar_faiss_gpu --scenarios /similar:center --clients 64 --replicas 4
  else
    echo "no faiss-gpu parts: FAISS_GPU=1 bash benchmarks/device/pack.sh, and a call per .gpuwork/f<N>"
  fi
fi
step done
