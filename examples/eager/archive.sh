#!/usr/bin/env bash
# Build eager.mar: eager-mode model (model.py + state dict) with a handler
# that overrides only preprocess.
#
# Usage: ./archive.sh [EXPORT_PATH]    (default: examples/eager/model_store)
set -euo pipefail

# HERE, EXPORT, PYTHON and `archiver` (torch-model-archiver).
source "$(dirname "${BASH_SOURCE[0]}")/../archiver.sh" "$@"

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
