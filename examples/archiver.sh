# Sourced by the examples' archive.sh scripts (not run on its own).
# Sets HERE (the calling example's folder), EXPORT (first argument, default
# HERE/model_store) and PYTHON, and defines `archiver`: torch-model-archiver,
# or its module when the console script's bin/ is not on PATH.
HERE="$(cd "$(dirname "${BASH_SOURCE[1]}")" && pwd)"
EXPORT="${1:-$HERE/model_store}"
PYTHON="${PYTHON:-python3}"
mkdir -p "$EXPORT"

archiver() {
    if command -v torch-model-archiver >/dev/null 2>&1; then
        torch-model-archiver "$@"
    else
        "$PYTHON" -m model_archiver.model_packaging "$@"
    fi
}
