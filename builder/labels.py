"""Image label keys: the build-to-deploy contract (what an image says about itself).

The builder writes these; `mkserve inspect` and `mkserve render IMAGE` read them.
"""
from __future__ import annotations

from mkserve.runtime.settings import SETTINGS

PREFIX = "io.mkserve."

MODEL_NAME = PREFIX + "model.name"
MODEL_VERSION = PREFIX + "model.version"
HANDLER = PREFIX + "model.handler"
ARCHIVE_SHA256 = PREFIX + "archive.sha256"
SOURCE_KIND = PREFIX + "source.kind"
# The settings an image records its build-time value of (the table in runtime/settings.py
# names each label): setting name -> label key.
SETTING_LABELS: dict[str, str] = {s.name: PREFIX + s.label for s in SETTINGS if s.label}
BATCH_SIZE = SETTING_LABELS["batch_size"]
MAX_BATCH_DELAY_MS = SETTING_LABELS["max_batch_delay_ms"]
QUEUE_SIZE = SETTING_LABELS["queue_size"]
RESPONSE_TIMEOUT_S = SETTING_LABELS["response_timeout_s"]
STARTUP_TIMEOUT_S = SETTING_LABELS["startup_timeout_s"]
GRACEFUL_TIMEOUT_S = SETTING_LABELS["graceful_timeout_s"]
PORT = SETTING_LABELS["port"]
WORKERS = SETTING_LABELS["workers"]  # "0" = sized at start from the CPU quota / GPUs
THREADS = SETTING_LABELS["threads"]  # request threads per worker
GPU = PREFIX + "gpu"  # "true" for GPU builds
TORCH_VERSION = PREFIX + "torch.version"
MKSERVE_VERSION = PREFIX + "version"
# The Dockerfile stage an image came from (deps, model-deps, serve). Engines that keep each
# step as an image (Podman, Docker's legacy builder) leave the stages untagged as layer
# cache; `mkserve prune` finds them by this label.
STAGE = PREFIX + "stage"

OCI_CREATED = "org.opencontainers.image.created"
OCI_VERSION = "org.opencontainers.image.version"
OCI_REVISION = "org.opencontainers.image.revision"
OCI_SOURCE = "org.opencontainers.image.source"
OCI_TITLE = "org.opencontainers.image.title"
OCI_DESCRIPTION = "org.opencontainers.image.description"
