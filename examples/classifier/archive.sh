#!/usr/bin/env bash
# Build the guide's model archives for SimpleClassifier.
#
# Usage: ./archive.sh [EXPORT_PATH]    (default: examples/classifier/model_store)
#
# Produces, with the real torch-model-archiver:
#   classifier.mar           the guide's custom handler (handler.py) with
#                            index_to_name.json and model-config.yaml
#   classifier_scripted.mar  TorchScript with the built-in --handler base_handler
#   classifier_eager.mar     eager mode: --model-file model.py + state_dict
# The guide names all three "classifier"; they get distinct names here so they
# can sit in one model store (the archiver would overwrite one with the next).
set -euo pipefail

# HERE, EXPORT, PYTHON and `archiver` (torch-model-archiver).
source "$(dirname "${BASH_SOURCE[0]}")/../archiver.sh" "$@"

# Model files are written next to the sources, as in the guide (git-ignored).
"$PYTHON" "$HERE/make_model.py" "$HERE"

# The guide's custom handler, with labels and batching configuration.
archiver \
    --model-name classifier \
    --version 1.0 \
    --serialized-file "$HERE/model_scripted.pt" \
    --handler "$HERE/handler.py" \
    --extra-files "$HERE/index_to_name.json" \
    --config-file "$HERE/model-config.yaml" \
    --export-path "$EXPORT" \
    --force

# TorchScript model with the default handler.
archiver \
    --model-name classifier_scripted \
    --version 1.0 \
    --serialized-file "$HERE/model_scripted.pt" \
    --handler base_handler \
    --export-path "$EXPORT" \
    --force

# Eager mode model (requires the model definition file).
archiver \
    --model-name classifier_eager \
    --version 1.0 \
    --model-file "$HERE/model.py" \
    --serialized-file "$HERE/model_weights.pth" \
    --handler base_handler \
    --export-path "$EXPORT" \
    --force

ls -l "$EXPORT"
