#!/usr/bin/env bash
# Build function_handler.mar: a TorchScript model served by a module-level
# handle(data, context) function.
#
# Usage: ./archive.sh [EXPORT_PATH]    (default: examples/function_handler/model_store)
set -euo pipefail

# HERE, EXPORT, PYTHON and `archiver` (torch-model-archiver).
source "$(dirname "${BASH_SOURCE[0]}")/../archiver.sh" "$@"

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
