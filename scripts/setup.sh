#!/usr/bin/env bash
# Creates .venv (once) and installs the project with its training, serving and dev extras and the
# client SDK. Re-running is cheap: it reinstalls only when pyproject.toml files changed.
# The installs go through uv (pip-compatible, several times faster: about 15 s against 70 s for a fresh
# .venv here), with pip's own settings (find-links, constraints, certificates) passed on; pip does them when uv
# cannot.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
stamp=.venv/.installed-$(cat pyproject.toml clients/pyproject.toml | sha256sum | cut -c1-16)
if [ ! -f "$stamp" ]; then
    pip_settings=$(.venv/bin/python -m pip config list 2>/dev/null || true)
    pip_setting() { sed -n "s/^global\.$1='\(.*\)'\$/\1/p" <<< "$pip_settings"; }
    uv_args=(--quiet --python .venv/bin/python)
    for links in ${PIP_FIND_LINKS:-} $(pip_setting find-links); do uv_args+=(--find-links "$links"); done
    for constraint in ${PIP_CONSTRAINT:-} $(pip_setting constraint); do
        [ -f "$constraint" ] && uv_args+=(--constraint "$constraint")
    done
    cert=${PIP_CERT:-$(pip_setting cert)}  # the certificates pip trusts (a proxy's, on this project's machines)
    [ -n "$cert" ] && [ -z "${SSL_CERT_FILE:-}" ] && export SSL_CERT_FILE="$cert"
    install() {
        if [ -x .venv/bin/uv ] && .venv/bin/uv pip install "${uv_args[@]}" "$@"; then return; fi
        .venv/bin/python -m pip install --quiet "$@"
    }
    .venv/bin/python -m pip install --quiet --upgrade pip
    .venv/bin/python -m pip install --quiet uv || echo "setup.sh: uv is not to be had; pip does the installs"
    # torch 2.13.0 is the CPU build on this project's machines' disk (pip's find-links); a GPU machine
    # installs its CUDA build of torch first (same version) and this line is then a no-op.
    install "torch==2.13.0"
    install -e ".[train,serve,dev,milvus,openvino]" -e clients/
    rm -f .venv/.installed-*
    touch "$stamp"
fi
