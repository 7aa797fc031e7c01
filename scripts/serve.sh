#!/usr/bin/env bash
# Sets up .venv if needed and serves the latest published model on http://127.0.0.1:8000,
# first installing the shipped model (shipped/alexnet-caltech101: ONNX export, parity check,
# gallery index) when the store has none; --from-scratch trains one here instead.
# Settings: ALEXNET_DATA (dataset, default ../shared/datasets/caltech101), ALEXNET_STORE_ROOT
# (default store/), ALEXNET_BUILD_EPOCHS, ALEXNET_PORT, ALEXNET_API_KEY and the other ALEXNET_*.
# Arguments go to `alexnet serve` (--host, --port, --from-scratch, --build-epochs, ...).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/alexnet serve --build-if-missing "$@"
