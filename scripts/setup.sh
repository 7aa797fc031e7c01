#!/usr/bin/env bash
# Creates .venv (once) and installs the project with its training, serving and dev extras and the
# client SDK. Re-running is cheap: it reinstalls only when pyproject.toml files changed.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
stamp=.venv/.installed-$(cat pyproject.toml clients/pyproject.toml | sha256sum | cut -c1-16)
if [ ! -f "$stamp" ]; then
    .venv/bin/python -m pip install --quiet --upgrade pip
    # torch 2.13.0 is the CPU build on this project's machines' disk; a GPU machine installs its
    # CUDA build of torch first (same version) and this line is then a no-op.
    .venv/bin/python -m pip install --quiet "torch==2.13.0"
    .venv/bin/python -m pip install --quiet -e ".[train,serve,dev,milvus,openvino]" -e clients/
    rm -f .venv/.installed-*
    touch "$stamp"
fi
