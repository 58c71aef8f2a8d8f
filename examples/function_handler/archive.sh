#!/usr/bin/env bash
# Build function_handler.mar: a TorchScript model served by a module-level
# handle(data, context) function.
#
# Usage: ./archive.sh [EXPORT_PATH]    (default: examples/function_handler/model_store)
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

# "handler.py" with no ":function" suffix: the loader looks for handle().
archiver \
    --model-name function_handler \
    --version 1.0 \
    --serialized-file "$HERE/model_scripted.pt" \
    --handler "$HERE/handler.py" \
    --export-path "$EXPORT" \
    --force

ls -l "$EXPORT"
