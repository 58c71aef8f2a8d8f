#!/usr/bin/env bash
# Build headers.mar: a class handler that reads X-Scale and sets per-request
# status, content type and response headers.
#
# Usage: ./archive.sh [EXPORT_PATH]    (default: examples/headers/model_store)
set -euo pipefail

# HERE, EXPORT, PYTHON and `archiver` (torch-model-archiver).
source "$(dirname "${BASH_SOURCE[0]}")/../archiver.sh" "$@"

"$PYTHON" "$HERE/make_model.py" "$HERE"

archiver \
    --model-name headers \
    --version 1.0 \
    --serialized-file "$HERE/model_scripted.pt" \
    --handler "$HERE/handler.py" \
    --config-file "$HERE/model-config.yaml" \
    --export-path "$EXPORT" \
    --force

ls -l "$EXPORT"
