#!/usr/bin/env bash
# Build eager.mar: eager-mode model (model.py + state dict) with a handler
# that overrides only preprocess.
#
# Usage: ./archive.sh [EXPORT_PATH]    (default: examples/eager/model_store)
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
    --model-name eager \
    --version 1.0 \
    --model-file "$HERE/model.py" \
    --serialized-file "$HERE/model_weights.pth" \
    --handler "$HERE/handler.py" \
    --export-path "$EXPORT" \
    --force

ls -l "$EXPORT"
