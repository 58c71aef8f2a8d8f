#!/usr/bin/env bash
# Build transformer.mar: a small TorchScript transformer encoder classifier,
# the compute-heavy model of the benchmarks.
#
# Usage: ./archive.sh [EXPORT_PATH]    (default: examples/transformer/model_store)
set -euo pipefail

# HERE, EXPORT, PYTHON and `archiver` (torch-model-archiver).
source "$(dirname "${BASH_SOURCE[0]}")/../archiver.sh" "$@"

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
