"""Image label keys: the build-to-deploy contract (what an image says about itself).

The builder writes these; `mkserve inspect` and `mkserve render IMAGE` read them.
"""
from __future__ import annotations

PREFIX = "io.mkserve."

MODEL_NAME = PREFIX + "model.name"
MODEL_VERSION = PREFIX + "model.version"
HANDLER = PREFIX + "model.handler"
ARCHIVE_SHA256 = PREFIX + "archive.sha256"
SOURCE_KIND = PREFIX + "source.kind"
BATCH_SIZE = PREFIX + "batch.size"
MAX_BATCH_DELAY_MS = PREFIX + "batch.max-delay-ms"
QUEUE_SIZE = PREFIX + "batch.queue-size"
RESPONSE_TIMEOUT_S = PREFIX + "response-timeout-s"
STARTUP_TIMEOUT_S = PREFIX + "startup-timeout-s"
GRACEFUL_TIMEOUT_S = PREFIX + "graceful-timeout-s"
PORT = PREFIX + "port"
WORKERS = PREFIX + "workers"  # "0" = sized at start from the CPU quota / GPUs
THREADS = PREFIX + "threads"  # request threads per worker
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
