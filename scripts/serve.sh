#!/usr/bin/env bash
# Sets up .venv if needed and serves the latest published model on http://127.0.0.1:8000,
# first training and publishing the default Caltech-101 model when the store has none.
# Settings: ALEXNET_DATA (dataset, default ../shared/datasets/caltech101), ALEXNET_STORE_ROOT
# (default store/), ALEXNET_BUILD_EPOCHS, ALEXNET_PORT, ALEXNET_API_KEY and the other ALEXNET_*.
# Arguments go to `alexnet serve` (--host, --port, --build-epochs, ...).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/alexnet serve --build-if-missing "$@"
