#!/usr/bin/env bash
# Build transformer.mar: a small TorchScript transformer encoder classifier,
# the compute-heavy model of the benchmarks.
#
# Usage: ./archive.sh [EXPORT_PATH]    (default: examples/transformer/model_store)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
EXPORT="${1:-$HERE/model_store}"
PYTHON="${PYTHON:-python3}"
mkdir -p "$EXPORT"

# Prefer the console script; fall back to the module when bin/ is not on PATH.
archiver() {
    if command -v torch-model-archiver >/dev/null 2>&1; then
        torch-model-archiver "$@"
    else
        "$PYTHON" -m model_archiver.model_packaging "$@"
    fi
}

"$PYTHON" "$HERE/make_model.py" "$HERE"

archiver \
    --model-name transformer \
    --version 1.0 \
    --serialized-file "$HERE/model_scripted.pt" \
    --handler "$HERE/handler.py" \
    --config-file "$HERE/model-config.yaml" \
    --export-path "$EXPORT" \
    --force

ls -l "$EXPORT"
